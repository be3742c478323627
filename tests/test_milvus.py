"""Congruence: the Milvus backend (milvus-lite in a temporary folder) returns the same
neighbours as exact FAISS search, with and without an ``allowed`` filter, and survives
save -> load through its manifest entry."""

from __future__ import annotations

from pathlib import Path

# pymilvus and milvus-lite come with the test extra: a missing one is a broken install, not
# a reason to skip.
import milvus_lite  # noqa: E402,F401
import numpy as np
import pymilvus  # noqa: E402,F401
import pytest

from qa.errors import IndexMismatch, IndexNotReady  # noqa: E402
from qa.index.vectors.factory import (  # noqa: E402
    drop_vectors,
    load_vector_index,
    make_vector_index,
)
from qa.index.vectors.faiss import FaissIndex  # noqa: E402
from qa.index.vectors.milvus import MilvusIndex, collection_name  # noqa: E402

N, DIM, NQ, K = 2000, 384, 20, 10


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return _unit(rng, N), _unit(rng, NQ)


@pytest.fixture(scope="module")
def indexes(data, tmp_path_factory: pytest.TempPathFactory):
    x, _ = data
    flat = FaissIndex(DIM, "flat")
    flat.add(x)
    uri = str(tmp_path_factory.mktemp("milvus") / "vectors.db")
    milvus = make_vector_index(DIM, N, backend="milvus", milvus_uri=uri,
                               collection=collection_name("qa_chunks", "g-20250101-000000-abc"))
    assert isinstance(milvus, MilvusIndex)
    milvus.add(x[:1500])  # two adds: ids continue where the first stopped
    milvus.add(x[1500:])
    yield flat, milvus
    milvus.close()


def _same_topk(f_scores, f_ids, m_scores, m_ids, tol: float = 1e-5) -> None:
    """Equal id lists, except that ids whose scores tie within ``tol`` may swap places."""
    np.testing.assert_allclose(m_scores, f_scores, atol=tol)
    for fs, fi, ms, mi in zip(f_scores, f_ids, m_scores, m_ids, strict=True):
        if list(fi) == list(mi):
            continue
        kth = fs[-1]
        assert set(fi[fs > kth + tol]) == set(mi[ms > kth + tol])
        assert set(fi[fs > kth + tol]) <= set(mi)


def test_same_neighbours_as_exact_faiss(indexes, data) -> None:
    flat, milvus = indexes
    _, q = data
    assert milvus.count() == N
    _same_topk(*flat.search(q, K), *milvus.search(q, K))


def test_same_neighbours_with_allowed_rows(indexes, data) -> None:
    flat, milvus = indexes
    _, q = data
    allowed = np.random.default_rng(3).choice(N, 300, replace=False).tolist()
    f_scores, f_ids = flat.search(q, K, allowed)
    m_scores, m_ids = milvus.search(q, K, allowed)
    assert set(m_ids.ravel()) <= set(allowed)
    _same_topk(f_scores, f_ids, m_scores, m_ids)
    # fewer allowed rows than k: the rest is padded with -1, as FAISS does
    _, few = milvus.search(q[:2], K, [5, 17, 1999])
    assert sorted(few[0][few[0] >= 0]) == [5, 17, 1999] and (few[:, 3:] == -1).all()
    _, none = milvus.search(q[:2], K, [])
    assert (none == -1).all()


def test_save_load_roundtrip(indexes, data, tmp_path: Path) -> None:
    _, milvus = indexes
    _, q = data
    milvus.save(tmp_path / "vectors.milvus.json")
    meta = milvus.describe()
    assert meta["engine"] == "milvus" and meta["count"] == N and meta["index_type"] == "FLAT"
    again = load_vector_index(tmp_path / "vectors.milvus.json", meta)
    try:
        np.testing.assert_array_equal(again.search(q, K)[1], milvus.search(q, K)[1])
        with pytest.raises(IndexMismatch):
            MilvusIndex.load(None, dict(meta, dim=DIM + 1))
    finally:
        again.close()


def test_factory_and_drop(tmp_path: Path) -> None:
    assert make_vector_index(DIM, 10).describe()["engine"] == "faiss"
    with pytest.raises(ValueError, match="QA_MILVUS_URI"):
        make_vector_index(DIM, 10, backend="milvus")
    index = make_vector_index(DIM, 10, backend="milvus", milvus_uri=str(tmp_path / "v.db"),
                              collection="old_generation")
    index.add(np.eye(DIM, dtype=np.float32)[:10])
    meta = index.describe()
    drop_vectors(meta)
    with pytest.raises(IndexNotReady):
        MilvusIndex.load(None, meta)
    index.close()


def test_whole_pipeline_on_milvus_matches_faiss(tmp_path, corpus_dir, fake_embedder):
    """The index build and search, with the vectors in Milvus, rank exactly as with FAISS."""
    from qa.index.build import build_index
    from qa.index.load import open_index
    from qa.index.vectors.store import VectorStore
    from qa.retrieve.search import Searcher

    build_index(corpus_dir, tmp_path / "faiss", fake_embedder)
    store = VectorStore(backend="milvus", uri=str(tmp_path / "milvus.db"))
    build_index(corpus_dir, tmp_path / "milvus", fake_embedder, vector_store=store)
    a = Searcher(open_index(tmp_path / "faiss", fake_embedder), fake_embedder)
    b = Searcher(open_index(tmp_path / "milvus", fake_embedder, store), fake_embedder)
    assert b.index.manifest["vectors"]["engine"] == "milvus"
    for q in ("光芯屏端网", "武汉有多少名院士", "碳排放权交易"):
        for mode in ("dense", "auto"):
            ra = [h.chunk.chunk_id for h in a.search(q, top_k=10, mode=mode).hits]
            rb = [h.chunk.chunk_id for h in b.search(q, top_k=10, mode=mode).hits]
            assert ra == rb, (q, mode)
