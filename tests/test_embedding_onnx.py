"""Encoder backends: length bucketing, and the ONNX / int8 backends against the torch model."""

from __future__ import annotations

import numpy as np
import pytest

from qa.config import Settings
from qa.encoders.onnx import length_batches


def test_length_batches_sort_longest_first_and_respect_the_budget():
    lengths = [5, 300, 12, 512, 40, 512, 7, 90]
    batches = length_batches(lengths, token_budget=1024, max_rows=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) * lengths[b[0]] <= 1024 or len(b) == 1
        assert lengths[b[0]] == max(lengths[i] for i in b)
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)


def test_a_text_longer_than_the_budget_gets_a_batch_of_its_own():
    assert length_batches([4000, 10, 10], token_budget=512) == [[0], [1, 2]]


def test_unknown_backend_is_a_clear_error(tmp_path):
    from qa.encoders.onnx import make_backend_embedder
    from qa.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="onnx-int8"):
        make_backend_embedder("tensorrt", tmp_path, "m", "0" * 64, tmp_path,
                              query_prompt="query: ", passage_prompt="passage: ")


TEXTS = ["武汉有多少名院士?", "What is the R&D spending target for 2025?",
         "长江经济带的发展规划包括哪些方面。" * 40, "光"]


@pytest.fixture(scope="module")
def backends(real_embedder):
    from qa.service.wiring import make_embedder

    return {"torch": real_embedder if "st:" in real_embedder.fingerprint
            else make_embedder(Settings(allow_download=False, encoder_backend="torch")),
            **{b: make_embedder(Settings(allow_download=False, encoder_backend=b))
               for b in ("onnx", "onnx-int8")}}


@pytest.mark.model
@pytest.mark.parametrize("backend,floor", [("onnx", 0.9999), ("onnx-int8", 0.98)])
@pytest.mark.parametrize("kind", ["query", "passage"])
def test_onnx_vectors_match_the_torch_model(backends, backend, floor, kind):
    ref = backends["torch"].embed_batch(TEXTS, kind)
    got = backends[backend].embed_batch(TEXTS, kind)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float((ref * got).sum(axis=1).min()) > floor
    # One text alone or in a padded batch: the same vector in float32; int8 quantises the
    # activations with one scale per batch, so its vectors move a little with their company.
    alone = backends[backend].embed_batch(TEXTS[:1], kind)
    assert float(alone[0] @ got[0]) > (0.9999 if backend == "onnx" else 0.99)


@pytest.mark.model
def test_each_backend_has_its_own_fingerprint_and_the_same_tokens(backends):
    prints = {b: e.fingerprint for b, e in backends.items()}
    assert len(set(prints.values())) == 3
    assert prints["onnx"].startswith("onnx:") and prints["onnx-int8"].startswith("onnx-int8:")
    for e in backends.values():
        assert e.dim == 384 and e.max_tokens == 512
        assert [e.count_tokens(t) for t in TEXTS] == \
            [backends["torch"].count_tokens(t) for t in TEXTS]
