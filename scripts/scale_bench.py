"""Scale benchmark: vector search, chunk store and BM25 at up to a million passages.

Prints one JSON object. Everything is synthetic and seeded, so two runs see the same data:

* vectors: a Gaussian mixture of unit vectors, ``n // 1000`` clusters of about a thousand
  points (centres uniform on the sphere, isotropic noise of norm ``--noise`` around each,
  cosine to the centre about 0.71 at the default 1.0), renormalised; the queries are fresh
  draws from the same mixture. HNSW top-10 is compared with exact inner-product search.
* store: ``write_store`` / ``ChunkStore`` with ``n`` chunks of Chinese-like text.
* lexical: ``BM25Index`` over ``n`` passages of ~60 tokens drawn from a Zipf(1.0) vocabulary
  of 200,000 terms.
* milvus (only when asked for): the same vectors in ``MilvusIndex`` on milvus-lite.

Examples::

    python scripts/scale_bench.py --n 20000                     # seconds
    python scripts/scale_bench.py --n 1000000 --parts vectors --check
    python scripts/scale_bench.py --n 1000000 --parts store,lexical --workdir /tmp/scale
    python scripts/scale_bench.py --n 100000 --parts milvus

``--check`` exits 1 unless HNSW recall@10 >= 0.95 and single-query p50 <= 2 ms.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa.index.vectors.faiss import FaissIndex  # noqa: E402

CLUSTER_SIZE = 1000


def rss_mb() -> dict[str, float]:
    """Resident memory now and its peak so far (VmHWM), in MiB, from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return {"rss_mb": round(out.get("VmRSS", 0.0), 1), "peak_mb": round(out.get("VmHWM", 0.0), 1)}


def pct(xs: list[float], p: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1e3, p)), 3)


# -- vectors ---------------------------------------------------------------------------------
def mixture(n: int, dim: int, clusters: int, noise: float, seed: int,
            block: int = 100_000) -> np.ndarray:
    """``n`` unit vectors from the Gaussian mixture described in the module docstring.

    The centres depend only on (clusters, dim), so corpus and queries share them."""
    centres = np.random.default_rng(12345).standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        x = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        x *= noise / np.sqrt(dim)
        x += centres[rng.integers(0, clusters, hi - lo)]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[lo:hi] = x
    return out


def exact_topk(x: np.ndarray, q: np.ndarray, k: int, block: int = 200_000) -> np.ndarray:
    """Exact top-k ids by inner product, in blocks so no second copy of ``x`` is made."""
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for lo in range(0, len(x), block):
        s = q @ x[lo:lo + block].T
        part = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + lo], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(best_s, keep, 1)
        best_i = np.take_along_axis(best_i, keep, 1)
    return best_i


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def timed_search(index: FaissIndex, q: np.ndarray, k: int, allowed=None,
                 warmup: int = 20) -> tuple[np.ndarray, list[float]]:
    """One query at a time, as the service sends them; returns ids and per-query seconds."""
    for i in range(min(warmup, len(q))):
        index.search(q[i:i + 1], k, allowed)
    ids, lat = [], []
    for i in range(len(q)):
        t = time.perf_counter()
        _, found = index.search(q[i:i + 1], k, allowed)
        lat.append(time.perf_counter() - t)
        ids.append(found[0])
    return np.asarray(ids), lat


def bench_vectors(a: argparse.Namespace) -> dict[str, Any]:
    import faiss

    n, dim, k = a.n, a.dim, 10
    threads = faiss.omp_get_max_threads()
    clusters = max(1, n // CLUSTER_SIZE)
    t = time.perf_counter()
    x = mixture(n, dim, clusters, a.noise, seed=a.seed)
    q = mixture(a.queries, dim, clusters, a.noise, seed=a.seed + 1)
    res: dict[str, Any] = {
        "data": {"kind": "gaussian-mixture", "clusters": clusters, "noise": a.noise,
                 "queries": a.queries, "generate_s": round(time.perf_counter() - t, 1)}}
    t = time.perf_counter()
    truth = exact_topk(x, q, k)
    sims = np.sort(q @ x[:min(n, 50_000)].T, axis=1)
    res["data"]["exact_batch_s"] = round(time.perf_counter() - t, 1)
    res["data"]["query_to_random_cos"] = round(float(sims.mean()), 3)

    if a.search_threads:  # searches only; the HNSW build below keeps all threads
        faiss.omp_set_num_threads(a.search_threads)
    flat_sizes = [m for m in a.flat_sizes if m <= n] or [n]
    res["flat"] = []
    for m in flat_sizes:
        flat = FaissIndex(dim, "flat")
        flat.add(x[:m])
        _, lat = timed_search(flat, q[:a.flat_queries], k)
        res["flat"].append({"n": m, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95)})
        del flat
        gc.collect()

    faiss.omp_set_num_threads(threads)
    before = rss_mb()["rss_mb"]
    cache = Path(a.index_cache) if a.index_cache else None
    t = time.perf_counter()
    if cache and cache.exists():
        hnsw = FaissIndex.load(cache, {"dim": dim, "kind": "hnsw", "hnsw_m": a.hnsw_m,
                                       "ef_construction": a.ef_construction,
                                       "ef_search": a.ef_search[0]})
        res["hnsw_loaded_from"] = str(cache)
    else:
        hnsw = FaissIndex.for_size(dim, n, hnsw_threshold=0, hnsw_m=a.hnsw_m,
                                   ef_construction=a.ef_construction)
        hnsw.add(x)
        if cache:
            hnsw.save(cache)
    res["hnsw"] = {"m": a.hnsw_m, "ef_construction": a.ef_construction,
                   "build_s": round(time.perf_counter() - t, 1),
                   "index_rss_mb": round(rss_mb()["rss_mb"] - before, 1), "sweep": []}
    if a.search_threads:
        faiss.omp_set_num_threads(a.search_threads)
    for ef in a.ef_search:
        hnsw.ef_search = ef
        found, lat = timed_search(hnsw, q, k)
        res["hnsw"]["sweep"].append({"ef_search": ef, "recall_at_10": round(recall(found, truth), 4),
                                     "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
                                     "p99_ms": pct(lat, 99)})
    ok = [s for s in res["hnsw"]["sweep"] if s["recall_at_10"] >= 0.95 and s["p50_ms"] <= 2.0]
    res["hnsw"]["meets_target"] = ok[0] if ok else None
    hnsw.ef_search = a.ef_search[0] if not ok else ok[0]["ef_search"]
    res["filtered"] = bench_filtered(hnsw, x, q[:a.filter_queries], k, a.seed)

    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        t = time.perf_counter()
        path = Path(tmp) / "vectors.faiss"
        hnsw.save(path)
        save_s = time.perf_counter() - t
        t = time.perf_counter()
        again = FaissIndex.load(path, hnsw.describe())
        load_s = time.perf_counter() - t
        same = np.array_equal(again.search(q[:20], k)[1], hnsw.search(q[:20], k)[1])
        res["hnsw"].update(save_s=round(save_s, 1), load_s=round(load_s, 1),
                           file_mb=round(path.stat().st_size / 2**20, 1), roundtrip_same=same)
    res["hnsw"]["describe"] = hnsw.describe()
    return res


def bench_filtered(index: FaissIndex, x: np.ndarray, q: np.ndarray, k: int,
                   seed: int) -> list[dict[str, Any]]:
    """Filtered search (``allowed``) at several selectivities: does it return k allowed ids,
    and the right ones? Small sets are one document's contiguous rows; large ones random."""
    rng = np.random.default_rng(seed + 7)
    n = len(x)
    out = []
    for size in (50, 1000, 10_000, 30_000, n // 10):
        if size >= n or size < k:
            continue
        if size <= 1000:
            lo = int(rng.integers(0, n - size))
            allowed = np.arange(lo, lo + size)
        else:
            allowed = np.sort(rng.choice(n, size, replace=False))
        truth = allowed[exact_topk(x[allowed], q, k)]
        found, lat = timed_search(index, q, k, allowed.tolist(), warmup=3)
        inside = np.isin(found[found >= 0], allowed).all()
        out.append({"allowed": int(size), "min_returned": int((found >= 0).sum(1).min()),
                    "all_inside": bool(inside), "recall_at_10": round(recall(found, truth), 4),
                    "p50_ms": pct(lat, 50)})
    return out


# -- text: chunk store and BM25 --------------------------------------------------------------
def vocabulary(size: int) -> list[str]:
    """``size`` distinct two-character CJK "words" (rank order = frequency order)."""
    return [chr(0x4E00 + i % 20_000) + chr(0x4E00 + i // 20_000) for i in range(size)]


def passages(n: int, vocab: int, mean_tokens: int, seed: int) -> list[list[str]]:
    """Token lists of ``n`` passages: lengths uniform in [mean/2, 3*mean/2], terms drawn
    from a Zipf(1.0) law over ``vocab`` ranks (so the head terms are in most passages)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    cdf = np.cumsum(p / p.sum())
    lengths = rng.integers(mean_tokens // 2, mean_tokens * 3 // 2 + 1, n)
    ids = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), vocab - 1)
    terms = np.asarray(vocabulary(vocab), dtype=object)
    ends = np.cumsum(lengths)
    return [terms[ids[e - m:e]].tolist() for e, m in zip(ends, lengths, strict=True)]


def queries(count: int, vocab: int, seed: int) -> list[list[str]]:
    """Queries of 2-6 tokens from the same law as the passages (a mix of head and tail)."""
    return [toks[:m] for toks, m in zip(passages(count, vocab, 8, seed),
                                        np.random.default_rng(seed).integers(2, 7, count),
                                        strict=True)]


def child(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (so open time and RSS are what a service sees);
    it prints one JSON object."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_PRELUDE = f"""
import json, sys, time, random
import numpy as np
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from scale_bench import rss_mb, pct, queries
"""


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets VmHWM to the current RSS
        fh.write("5")


def bench_store(a: argparse.Namespace) -> dict[str, Any]:
    from qa.index.store import write_store
    from qa.types import Chunk, Document

    n, per = a.n, a.chunks_per_doc
    t = time.perf_counter()
    toks = passages(n, a.vocab, a.tokens, a.seed)
    n_docs = (n + per - 1) // per
    docs = [Document(doc_id=f"d{d:07d}", path=f"corpus/d{d:07d}.md", title=f"关于第{d}号文件的通知",
                     text="", sha256=f"{d:064x}", date="2021-07-26", source="synthetic")
            for d in range(n_docs)]
    section = ("第一章 总则", "第三条")

    def rows(toks: list[list[str]]):
        for r, tk in enumerate(toks):
            text = "".join(tk)
            yield r, Chunk(chunk_id=f"d{r // per:07d}-{r % per}", doc_id=f"d{r // per:07d}",
                           paragraph=r % per, window=0, char_start=0, char_end=len(text),
                           text=text, clean_text=text, section=section), tk

    res: dict[str, Any] = {"chunks": n, "documents": n_docs,
                           "generate_s": round(time.perf_counter() - t, 1)}
    workdir = Path(tempfile.mkdtemp(dir=a.workdir))
    path = workdir / "chunks.sqlite"
    gc.collect()
    before = rss_mb()["rss_mb"]
    reset_peak()
    t = time.perf_counter()
    write_store(path, docs, rows(toks))
    res.update(write_s=round(time.perf_counter() - t, 1),
               write_extra_peak_mb=round(rss_mb()["peak_mb"] - before, 1),
               file_mb=round(path.stat().st_size / 2**20, 1))
    del toks
    res["open"] = child(_PRELUDE + f"""
from qa.index.store import ChunkStore
base = rss_mb()["rss_mb"]  # after imports: what opening adds
t = time.perf_counter(); s = ChunkStore({str(path)!r}); opened = time.perf_counter() - t
after = rss_mb()["rss_mb"]
rnd = random.Random(0); n = {n}; docs = list(s.documents)
def lat(fn, reps=200):
    out = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return {{"p50_ms": pct(out, 50), "p95_ms": pct(out, 95)}}
t = time.perf_counter(); c = s.count(); count_s = time.perf_counter() - t
print(json.dumps({{"open_s": round(opened, 3), "rss_before_mb": base, "rss_after_open_mb": after,
  "count_ms": round(count_s * 1e3, 1),
  "get_10_random": lat(lambda: s.get([rnd.randrange(n) for _ in range(10)])),
  "rows_of_1_doc": lat(lambda: s.rows_of([rnd.choice(docs)])),
  "document_lookup": lat(lambda: s.documents[rnd.choice(docs)]),
  "chunks_of_1_doc": lat(lambda: s.chunks_of(rnd.choice(docs))),
  "rss_after_queries_mb": rss_mb()["rss_mb"]}}))
""")
    shutil.rmtree(workdir, ignore_errors=True)
    return res


def bench_lexical(a: argparse.Namespace) -> dict[str, Any]:
    from qa.index.lexical import BM25Index

    t = time.perf_counter()
    toks = passages(a.n, a.vocab, a.tokens, a.seed)
    res: dict[str, Any] = {"passages": a.n, "vocab": a.vocab, "mean_tokens": a.tokens,
                           "generate_s": round(time.perf_counter() - t, 1)}
    gc.collect()
    before = rss_mb()["rss_mb"]
    reset_peak()
    t = time.perf_counter()
    bm25 = BM25Index.build(toks)
    res.update(build_s=round(time.perf_counter() - t, 1),
               build_extra_peak_mb=round(rss_mb()["peak_mb"] - before, 1),
               nnz=int(bm25.weights.nnz), terms=len(bm25.vocab))
    del toks
    workdir = Path(tempfile.mkdtemp(dir=a.workdir))
    t = time.perf_counter()
    bm25.save(workdir)
    res["save_s"] = round(time.perf_counter() - t, 1)
    res["files_mb"] = {f.name: round(f.stat().st_size / 2**20, 1) for f in workdir.iterdir()}
    del bm25
    gc.collect()
    res["open"] = child(_PRELUDE + f"""
from pathlib import Path
from qa.index.lexical import BM25Index
base = rss_mb()["rss_mb"]  # after imports: what opening adds
t = time.perf_counter(); bm = BM25Index.load(Path({str(workdir)!r})); opened = time.perf_counter() - t
after = rss_mb()["rss_mb"]
qs = queries({a.queries}, {a.vocab}, {a.seed + 1})
def lat(fn):
    out = []
    for q in qs:
        t = time.perf_counter(); fn(q); out.append(time.perf_counter() - t)
    return {{"p50_ms": pct(out, 50), "p95_ms": pct(out, 95), "p99_ms": pct(out, 99)}}
def sort_all(q):  # what search.py's _lexical does after scores(): argsort every nonzero
    s = bm.scores(q); nz = np.flatnonzero(s > 0); return nz[np.argsort(-s[nz], kind="stable")[:100]]
def top(q):
    s = bm.scores(q); part = np.argpartition(-s, 100)[:100]; return part[np.argsort(-s[part])]
print(json.dumps({{"open_s": round(opened, 3), "rss_before_mb": base, "rss_after_open_mb": after,
  "scores": lat(bm.scores), "scores_argsort_nonzero_top100": lat(sort_all),
  "scores_argpartition_top100": lat(top), "top": lat(lambda q: bm.top(q, 100)) if hasattr(bm, "top") else None,
  "rss_after_queries_mb": rss_mb()["rss_mb"]}}))
""")
    shutil.rmtree(workdir, ignore_errors=True)
    return res


def bench_milvus(a: argparse.Namespace) -> dict[str, Any]:
    """The Milvus backend on milvus-lite (FLAT, embedded): insert, search, filtered search."""
    from qa.index.vectors.milvus import MilvusIndex

    n, dim, k = a.n, a.dim, 10
    clusters = max(1, n // CLUSTER_SIZE)
    x = mixture(n, dim, clusters, a.noise, seed=a.seed)
    q = mixture(min(a.queries, 200), dim, clusters, a.noise, seed=a.seed + 1)
    truth = exact_topk(x, q, k)
    workdir = Path(tempfile.mkdtemp(dir=a.workdir))
    res: dict[str, Any] = {"n": n, "uri": "milvus-lite (local file)"}
    try:
        t = time.perf_counter()
        index = MilvusIndex(dim, str(workdir / "vectors.db"), "bench")
        res["open_create_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        index.add(x)
        index.save(workdir / "vectors.milvus.json")
        res["insert_flush_s"] = round(time.perf_counter() - t, 1)
        res["index_type"] = index.index_type
        found, lat = timed_search(index, q, k)  # type: ignore[arg-type]
        res["search"] = {"recall_at_10": round(recall(found, truth), 4), "p50_ms": pct(lat, 50),
                         "p95_ms": pct(lat, 95)}
        allowed = np.arange(n // 2, n // 2 + 50)
        found, lat = timed_search(index, q[:50], k, allowed.tolist(), warmup=3)  # type: ignore[arg-type]
        res["filtered_50_rows"] = {"all_inside": bool(np.isin(found, allowed).all()),
                                   "p50_ms": pct(lat, 50)}
        index.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return res


# -- main ------------------------------------------------------------------------------------
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="vectors / passages (default 1e6)")
    p.add_argument("--parts", default="vectors,store,lexical",
                   help="comma-separated: vectors, store, lexical, milvus (needs pymilvus)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--noise", type=float, default=1.0, help="noise norm around each centre")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hnsw-m", type=int, default=FaissIndex(1, "flat").hnsw_m)
    p.add_argument("--ef-construction", type=int, default=FaissIndex(1, "flat").ef_construction)
    p.add_argument("--ef-search", type=lambda s: [int(v) for v in s.split(",")],
                   default=[FaissIndex(1, "flat").ef_search],
                   help="comma-separated; the first meeting the target is used for the rest")
    p.add_argument("--flat-sizes", type=lambda s: [int(v) for v in s.split(",")],
                   default=[50_000, 200_000, 1_000_000])
    p.add_argument("--flat-queries", type=int, default=200)
    p.add_argument("--filter-queries", type=int, default=100)
    p.add_argument("--search-threads", type=int, default=None,
                   help="FAISS OpenMP threads while timing searches (default: all)")
    p.add_argument("--index-cache", help="reuse (or write) the built HNSW index at this path")
    p.add_argument("--workdir", default=None, help="where temporary index files go")
    p.add_argument("--chunks-per-doc", type=int, default=50)
    p.add_argument("--vocab", type=int, default=200_000)
    p.add_argument("--tokens", type=int, default=60, help="mean tokens per passage")
    p.add_argument("--check", action="store_true", help="exit 1 if the HNSW target is missed")
    p.add_argument("--out", help="also write the JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    parts = set(a.parts.split(","))
    import faiss

    report: dict[str, Any] = {
        "n": a.n, "dim": a.dim, "cores": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
        "search_threads": a.search_threads or faiss.omp_get_max_threads(),
        "loadavg_start": [round(v, 2) for v in os.getloadavg()]}
    started = time.perf_counter()
    if "vectors" in parts:
        report["vectors"] = bench_vectors(a)
    if "store" in parts:
        report["store"] = bench_store(a)
    if "lexical" in parts:
        report["lexical"] = bench_lexical(a)
    if "milvus" in parts:
        report["milvus"] = bench_milvus(a)
    report["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    report["total_s"] = round(time.perf_counter() - started, 1)
    report["memory"] = rss_mb()
    text = json.dumps(report, ensure_ascii=False, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n", encoding="utf-8")
    if a.check and "vectors" in report and not report["vectors"]["hnsw"]["meets_target"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
