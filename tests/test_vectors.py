"""Every VectorIndex engine against brute force: search, exact scoring of given rows,
save -> load round trips. Search relies on ``score`` for its dense leg."""

from __future__ import annotations

import numpy as np
import pytest

from qa.index.vectors.faiss import FaissIndex

N, DIM = 600, 32


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _engines(tmp_path):
    yield "flat", FaissIndex(DIM, "flat")
    yield "hnsw", FaissIndex(DIM, "hnsw")
    try:
        from qa.index.vectors.milvus import MilvusIndex

        yield "milvus", MilvusIndex(DIM, str(tmp_path / "m.db"), "qa_test_vectors")
    except Exception as exc:  # noqa: BLE001 - milvus-lite is an extra
        pytest.skip(f"milvus-lite unavailable: {exc}")


def test_score_is_the_exact_inner_product_for_every_engine(tmp_path):
    rng = np.random.default_rng(0)
    data, q = _unit(rng, N), _unit(rng, 1)[0]
    truth = data @ q
    for name, index in _engines(tmp_path):
        index.add(data)
        rows = np.array([5, 0, 599, 5, 17], np.int64)  # any order, repeats allowed
        assert np.allclose(index.score(q, rows), truth[rows], atol=1e-5), name
        if index.exhaustive:
            assert np.allclose(index.score(q), truth, atol=1e-5), name
        assert index.score(q, np.zeros(0, np.int64)).shape == (0,), name


def test_only_exact_local_indexes_claim_to_be_exhaustive(tmp_path):
    assert FaissIndex(DIM, "flat").exhaustive
    assert not FaissIndex(DIM, "hnsw").exhaustive


def test_scores_survive_a_save_and_load(tmp_path):
    rng = np.random.default_rng(1)
    data, q = _unit(rng, N), _unit(rng, 1)[0]
    for kind in ("flat", "hnsw"):
        index = FaissIndex(DIM, kind)
        index.add(data)
        index.save(tmp_path / f"{kind}.faiss")
        back = FaissIndex.load(tmp_path / f"{kind}.faiss", index.describe())
        assert np.allclose(back.score(q), data @ q, atol=1e-5)
        top = np.argsort(-(data @ q))[:10]
        _, ids = back.search(q[None, :], 10)
        assert len(set(ids[0]) & set(top)) >= (10 if kind == "flat" else 8)
