"""HNSW against brute force on clustered vectors, with the default parameters of
``FaissIndex``; save -> load round trips; filtered search; the scale benchmark at CI size."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from qa.index.vectors.faiss import FaissIndex

ROOT = Path(__file__).resolve().parents[1]
N, DIM, NQ, K = 20_000, 384, 200, 10


def _bench():
    spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "scripts" / "scale_bench.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _bench()


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """The benchmark's Gaussian mixture: 20 clusters of ~1,000, queries from the same law."""
    clusters = N // bench.CLUSTER_SIZE
    return bench.mixture(N, DIM, clusters, 1.0, seed=0), bench.mixture(NQ, DIM, clusters, 1.0,
                                                                        seed=1)


@pytest.fixture(scope="module")
def hnsw(data) -> FaissIndex:
    index = FaissIndex.for_size(DIM, N, hnsw_threshold=N)  # the defaults, as the indexer uses
    assert index.kind == "hnsw"
    index.add(data[0])
    return index


def _exact(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


def test_hnsw_recall_against_brute_force(hnsw, data) -> None:
    x, q = data
    _, ids = hnsw.search(q, K)
    assert bench.recall(ids, _exact(x, q, K)) >= 0.95


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_roundtrip(kind, hnsw, data, tmp_path: Path) -> None:
    x, q = data
    if kind == "flat":
        index = FaissIndex(DIM, "flat")
        index.add(x)
    else:
        index = hnsw
    meta = json.loads(json.dumps(index.describe()))  # as it goes through the manifest
    index.save(tmp_path / "vectors.faiss")
    for mmap in (False, True):
        again = FaissIndex.load(tmp_path / "vectors.faiss", meta, mmap=mmap)
        assert again.describe() == index.describe() and again.count() == N
        np.testing.assert_array_equal(again.search(q, K)[1], index.search(q, K)[1])
        np.testing.assert_array_equal(again.search(q[:5], K, list(range(100, 160)))[1],
                                      index.search(q[:5], K, list(range(100, 160)))[1])


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_filtered_search_returns_k_allowed_rows(kind, hnsw, data) -> None:
    x, q = data
    index = hnsw
    if kind == "flat":
        index = FaissIndex(DIM, "flat")
        index.add(x)
    rng = np.random.default_rng(5)
    one_doc = np.arange(7_000, 7_040)  # one document's rows: far too few for a graph walk
    scattered = np.sort(rng.choice(N, 3_000, replace=False))
    for allowed in (one_doc, scattered):
        _, ids = index.search(q, K, allowed.tolist())
        assert (ids >= 0).all() and np.isin(ids, allowed).all()
        truth = allowed[_exact(x[allowed], q, K)]
        assert bench.recall(ids, truth) >= 0.95
    _, few = index.search(q[:3], K, [11, 4, 11])
    assert (np.sort(few[:, :2], axis=1) == [4, 11]).all() and (few[:, 2:] == -1).all()
    _, none = index.search(q[:3], K, [])
    assert (none == -1).all()


def test_scale_bench_runs_at_ci_size(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    rc = bench.main(["--n", "10000", "--parts", "vectors,store,lexical", "--queries", "100",
                     "--flat-queries", "50", "--filter-queries", "20", "--check",
                     "--workdir", str(tmp_path), "--out", str(out)])
    report = json.loads(out.read_text(encoding="utf-8"))
    assert rc == 0, report["vectors"]["hnsw"]
    assert report["vectors"]["hnsw"]["roundtrip_same"]
    assert all(f["min_returned"] == 10 and f["all_inside"] for f in report["vectors"]["filtered"])
    assert report["store"]["open"]["open_s"] < 5 and report["lexical"]["nnz"] > 0
    assert json.loads(capsys.readouterr().out) == report


def test_single_threaded_serving_reaches_every_searching_thread(monkeypatch) -> None:
    """OpenMP's thread count is per thread: the server's limit must hold in the request
    threads that search, not only in the thread that loaded the index; and numpy's OpenBLAS
    (the exact rescoring) must be limited too (docs/PERFORMANCE.md: c=32 collapsed without)."""
    import threading

    import faiss
    from threadpoolctl import threadpool_info, threadpool_limits

    import qa.index.vectors.faiss as vectors

    before = {i["prefix"]: i["num_threads"] for i in threadpool_info()
              if i["internal_api"] == "openblas"}
    monkeypatch.setattr(vectors, "_search_threads", None)
    index = FaissIndex(8)
    index.add(np.eye(8, dtype=np.float32))
    seen: dict[str, int] = {}

    def search_in_a_new_thread(key: str) -> None:
        def run() -> None:
            index.search(np.ones((1, 8), np.float32), 3)
            seen[key] = faiss.omp_get_max_threads()
        t = threading.Thread(target=run)
        t.start()
        t.join()

    try:
        vectors.serve_single_threaded()
        search_in_a_new_thread("served")
        assert seen["served"] == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info()
                   if i["internal_api"] == "openblas")
    finally:
        threadpool_limits(limits=before)
    assert {i["prefix"]: i["num_threads"] for i in threadpool_info()
            if i["internal_api"] == "openblas"} == before
