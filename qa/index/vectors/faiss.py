"""The FAISS vector index (imported here only, lazily).

The index type is picked by size: exact inner product below ``hnsw_threshold`` vectors
(exact search on a few hundred thousand 384-d vectors is still a few ms, and never misses),
HNSW above it. The parameters chosen are returned by ``describe()`` for the manifest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import IndexMismatch, ModelUnavailable


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelUnavailable("faiss is not installed: run `pip install faiss-cpu`") from exc
    return faiss


# OpenMP's thread count is a per-thread setting: set only in the thread that loaded the
# index, it left every request thread of the pool at the default. So the limit is applied by
# each searching thread, once, on its first search.
_search_threads: int | None = None
_applied = threading.local()


def serve_single_threaded() -> None:
    """One thread per search from now on, in every thread of this process: a server runs
    many searches at once from its thread pool, and per-search thread teams of every core
    spin against each other. FAISS's OpenMP (per searching thread, below) and both OpenBLAS
    copies, numpy's (the dense leg's matrix products) and FAISS's: OpenBLAS's idle threads
    busy-wait. Without these limits c=32 served 27-34 queries/s at 57-73 ms of server CPU per
    request, with them 323-343 at 3.4-3.7 (scripts/serving_overhead.py, docs/PERFORMANCE.md).
    The encoder's threads (torch's own OpenMP, ONNX Runtime's pool) are not touched: it runs
    one batch at a time."""
    global _search_threads
    _search_threads = 1
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(internal_api="openblas").limit(limits=1)


def _limit_search_threads(faiss: Any) -> None:
    wanted = _search_threads
    if wanted is not None and getattr(_applied, "threads", None) != wanted:
        faiss.omp_set_num_threads(wanted)
        _applied.threads = wanted


def _flat_header(dim: int, n: int) -> bytes | None:
    """The bytes FAISS writes before the rows of an ``IndexFlatIP`` of ``n`` rows: taken from
    FAISS's own serialisation of an empty index, with the row count and the codes' length
    (in floats) filled in. None if that serialisation is not laid out as expected (another
    FAISS version): the caller then lets FAISS write the file."""
    faiss = _faiss()
    empty = faiss.serialize_index(faiss.IndexFlatIP(dim)).tobytes()
    if len(empty) != 45 or empty[:4] != b"IxFI" or empty[4:8] != np.int32(dim).tobytes() \
            or empty[8:16] != bytes(8) or empty[-8:] != bytes(8):
        return None
    return (empty[:8] + np.int64(n).tobytes() + empty[16:-8]
            + np.uint64(n * dim).tobytes())


def write_flat(path: Path, dim: int, n: int, blocks: Iterable[np.ndarray]) -> bool:
    """Write an exact inner-product index of ``n`` rows, given a block at a time, straight
    to ``path`` in FAISS's own format, without building it in memory (the index would be a
    second copy of vectors the build already has on disk). False, having written nothing,
    when this FAISS lays its files out otherwise; tests/test_vectors.py checks the bytes
    against ``faiss.write_index``."""
    head = _flat_header(dim, n)
    if head is None:
        return False
    written = 0
    with open(path, "wb") as fh:
        fh.write(head)
        for block in blocks:
            rows = np.ascontiguousarray(block, dtype=np.float32)
            if rows.size:
                fh.write(rows.data.cast("B"))
                written += len(rows)
    if written != n:
        raise ValueError(f"{path.name}: {written} rows written for {n} announced")
    return True


class FaissIndex:
    """Flat (exact) or HNSW inner-product index over unit vectors."""

    # Filtered HNSW only finds allowed rows its graph walk passes by: at 1M vectors it
    # returned as few as 3 of 10 when 1% of rows were allowed, but recall 0.985 at 3% with
    # efSearch 256 (docs/SCALING.md). Below 2% (or a few thousand rows), scanning just the
    # allowed rows is exact, and cheap for a document's contiguous rows.
    EXACT_FILTER_SHARE = 0.02
    EXACT_FILTER_ROWS = 4096

    # efSearch 128: recall@10 0.979 at 1M clustered 384-d vectors, p50 0.4 ms; 64 gave 0.92.
    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32,
                 ef_construction: int = 80, ef_search: int = 128, _index: Any = None) -> None:
        faiss = _faiss()
        self.dim = dim
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exhaustive = kind == "flat"
        if _index is not None:
            self._index = _index
        elif kind == "flat":
            self._index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            self._index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efConstruction = ef_construction
            self._index.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"unknown vector index kind {kind!r} (flat or hnsw)")

    @classmethod
    def for_size(cls, dim: int, n: int, hnsw_threshold: int = 200_000, **hnsw: Any) -> FaissIndex:
        return cls(dim, "hnsw" if n >= hnsw_threshold else "flat", **hnsw)

    def add(self, vectors: np.ndarray) -> None:
        if vectors.size:
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k exist."""
        faiss = _faiss()
        _limit_search_threads(faiss)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.count())) if self.count() else 1
        if self.count() == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        params = None
        if allowed is not None:
            rows = np.unique(np.asarray(allowed, dtype=np.int64).reshape(-1))
            rows = rows[(rows >= 0) & (rows < self.count())]
            if len(rows) <= max(self.EXACT_FILTER_ROWS, self.EXACT_FILTER_SHARE * self.count()):
                return self._search_rows(q, k, rows)
            sel = faiss.IDSelectorBatch(rows)
            if self.kind == "hnsw":
                # twice the usual beam: skipped rows still use up the walk
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(2 * self.ef_search, k))
            else:
                params = faiss.SearchParameters(sel=sel)
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        scores, ids = self._index.search(q, k, params=params)
        return scores, ids

    def _search_rows(self, q: np.ndarray, k: int,
                     rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among ``rows`` only (sorted, unique, in range), padded like faiss."""
        scores = np.full((len(q), k), np.finfo(np.float32).min, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        if rows.size == 0:
            return scores, ids
        sims = q @ self._stored()[rows].T
        kk = min(k, rows.size)
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        top_s = np.take_along_axis(sims, top, 1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        scores[:, :kk] = np.take_along_axis(top_s, order, 1)
        ids[:, :kk] = rows[np.take_along_axis(top, order, 1)]
        return scores, ids

    def _stored(self) -> np.ndarray:
        """The stored vectors as an (n, dim) view of FAISS's own buffer, no copy."""
        faiss = _faiss()
        flat = self._index if self.kind == "flat" else faiss.downcast_index(self._index.storage)
        if self.count() == 0:
            return np.zeros((0, self.dim), np.float32)
        return faiss.rev_swig_ptr(flat.get_xb(), self.count() * self.dim).reshape(-1, self.dim)

    def score(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        stored = self._stored()
        if rows is None:
            return stored @ q
        return stored[np.asarray(rows, dtype=np.int64)] @ q

    def save(self, path: Path) -> None:
        _faiss().write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any], mmap: bool = False) -> FaissIndex:
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(path), flags)
        if index.d != meta["dim"]:
            raise IndexMismatch(f"vector file has dimension {index.d}, manifest says {meta['dim']}")
        return cls(meta["dim"], meta.get("kind", "flat"), meta.get("hnsw_m", 32),
                   meta.get("ef_construction", 80), meta.get("ef_search", 64), _index=index)

    def count(self) -> int:
        return int(self._index.ntotal)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"engine": "faiss", "kind": self.kind, "dim": self.dim,
                             "metric": "inner_product"}
        if self.kind == "hnsw":
            d.update(hnsw_m=self.hnsw_m, ef_construction=self.ef_construction,
                     ef_search=self.ef_search)
        return d
