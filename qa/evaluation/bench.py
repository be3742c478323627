"""``qa bench``: encoder backends, the indexing pipeline, HTTP latency, memory and quality,
measured side by side in one run (the machine's load drifts; ratios within a run hold up
better than absolute figures across runs).

What each figure includes:

* ``encoder``: the encoder alone, ``embed_batch(passages, "passage")`` of the CMRC 2018 dev
  paragraphs, against the *bare* float32 model: one ``SentenceTransformer.encode`` call,
  ``batch_size=32``, its own length sorting (the ``torch`` backend is that same call, so it
  is the baseline). The passages are cut into blocks; every block runs through the baseline
  and each backend in a rotating order, and the ratio is reported per block (median) and
  overall.
* ``pipeline``: ``build_index`` of the same paragraphs as a corpus: chunking, the paragraph
  vectors, one vector per sentence of every multi-sentence chunk (the max-sim leg, about
  ten short texts per CMRC paragraph; not with ``+paragraphs-only``), the second encoder's
  vectors of both (not with ``+no-second``), hubness scores, BM25, the chunk store and the
  files, with the time of each stage. Its passages/s divides *paragraphs* by that whole time.
* ``build_scale``: a synthetic corpus of ``build_paragraphs`` paragraphs (and a quarter of
  it) built in a fresh process with the configured encoders: per-passage cost at scale and
  the build's peak memory (``qa.evaluation.bench_build``).
* ``quality``: ``qa.evaluation.retrieval.evaluate`` on XQuAD (zh->zh, en->zh) with each backend.
* ``query_batches``: query encoding cost per query at batch sizes 1, 8 and 32 per backend,
  the ceiling of what micro-batching can gain (see ``bench_query_batches``).
* ``http``: a real ``qa serve`` (micro-batched queries) per backend, distinct XQuAD questions
  at concurrency 1, 8 and 32, against single queries in this process: the bare encode plus an
  exact FAISS search, the backend's encode plus the same search, and the full
  ``Searcher.search`` (hybrid legs, fusion) without HTTP.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.config import Settings
from qa.encoders.base import Embedder, HashingEmbedder
from qa.evaluation.bench_build import bench_build_scale, bench_pipeline, pipeline_spec

Log = Callable[[str], None]
# What `qa bench --only` can pick; "pipeline" also runs "encoder" (its ratio is to the bare
# encoder's passages/s).
SECTIONS = ("encoder", "pipeline", "quality", "batches", "http", "build", "scale")


@dataclass
class BenchConfig:
    data_dir: Path
    backends: list[str] = field(default_factory=lambda: ["onnx-int8", "onnx", "torch-int8"])
    # "<backend>[@<batch>][+paragraphs-only|+late][+no-second]": the backend, build_index's
    # batch_size, without sentence vectors or with them pooled late (QA_SENTENCE_VECTORS),
    # without the second encoder (the configured one)
    pipeline_backends: list[str] = field(default_factory=lambda: [
        "onnx", "onnx+no-second", "onnx+late", "onnx+paragraphs-only",
        "onnx+paragraphs-only+no-second", "onnx-int8"])
    quality_backends: list[str] = field(default_factory=lambda: [
        "torch", "onnx-int8", "onnx", "torch-int8"])
    http_backends: list[str] = field(default_factory=lambda: ["torch", "onnx", "onnx-int8"])
    passages: int | None = None        # CMRC dev paragraphs (None: all 848)
    blocks: int = 4
    xquad_articles: int | None = None  # None: all 48 (1,190 questions per language)
    requests: dict[int, int] = field(default_factory=lambda: {1: 150, 8: 300, 32: 600})
    level_seconds: float = 60.0
    in_process_queries: int = 100
    batch_queries: int = 256           # per batch size, for the query-batching figures
    scale_n: int | None = 20_000
    # The synthetic build (qa.evaluation.bench_build): paragraphs assembled from XQuAD and
    # CMRC, built in a fresh process, with the hashing fake unless ``build_real_encoders``
    # (hours with the real ones); also at a quarter of it.
    build_paragraphs: int | None = 20_000
    build_real_encoders: bool = False
    sections: list[str] | None = None  # None: all of SECTIONS
    baseline: str = "bare"             # "bare" (SentenceTransformer float32) or "hashing"


def _embedder(settings: Settings, backend: str) -> Embedder:
    if backend == "hashing":
        return HashingEmbedder()
    from qa.service.wiring import make_embedder

    return make_embedder(settings.model_copy(update={"embedder": "sentence-transformers",
                                                     "encoder_backend": backend}))


def _bare(settings: Settings, kind: str) -> Embedder:
    """The reference: the float32 model through one ``SentenceTransformer.encode`` call per
    batch of texts, ``batch_size=32`` (``SentenceTransformerEmbedder.embed_batch``)."""
    if kind == "hashing":
        return HashingEmbedder()
    from qa.encoders.provision import resolve_model
    from qa.encoders.sentence_transformers import SentenceTransformerEmbedder

    r = resolve_model(settings.model, settings.model_cache_dir, settings.allow_download)
    return SentenceTransformerEmbedder(str(r.path), r.model_id, r.weights_sha256,
                                       query_prompt=settings.query_prompt,
                                       passage_prompt=settings.passage_prompt, batch_size=32,
                                       threads=settings.threads)


def _trim_squad(src: Path, dest: Path, paragraphs: int | None = None,
                articles: int | None = None) -> Path:
    """A copy of a SQuAD-format file with its first articles / paragraphs only."""
    data = json.loads(src.read_text(encoding="utf-8"))["data"][:articles]
    out, left = [], paragraphs if paragraphs is not None else 10**9
    for art in data:
        if left <= 0:
            break
        out.append({**art, "paragraphs": art["paragraphs"][:left]})
        left -= len(out[-1]["paragraphs"])
    dest.write_text(json.dumps({"data": out}, ensure_ascii=False), encoding="utf-8")
    return dest


def _paragraphs(path: Path) -> list[str]:
    return [p["context"] for a in json.loads(path.read_text("utf-8"))["data"]
            for p in a["paragraphs"]]


def _questions(*paths: Path) -> list[str]:
    """Questions of several files interleaved, duplicates dropped (the query cache must not
    answer any of them)."""
    lists = [[qa["question"] for a in json.loads(p.read_text("utf-8"))["data"]
              for para in a["paragraphs"] for qa in para["qas"]] for p in paths]
    mixed = [q for group in zip(*lists, strict=False) for q in group]
    return list(dict.fromkeys(q.strip() for q in mixed if q.strip()))


def bench_encoders(bare: Embedder, embedders: dict[str, Embedder], passages: list[str],
                   blocks: int, log: Log) -> dict[str, Any]:
    """Encoder throughput, block-interleaved with the baseline; see the module docstring."""
    names = ["bare", *embedders]
    models = {"bare": bare, **embedders}
    for m in models.values():  # first calls allocate; keep them out of the figures
        m.embed_batch(passages[:4], "passage")
    parts = [p for p in np.array_split(np.arange(len(passages)), blocks) if len(p)]
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for b, idx in enumerate(parts):
        texts = [passages[i] for i in idx]
        for name in names[b % len(names):] + names[:b % len(names)]:
            t0 = time.perf_counter()
            models[name].embed_batch(texts, "passage")
            seconds[name].append(time.perf_counter() - t0)
            log(f"encoder block {b + 1}/{len(parts)} {name}: {seconds[name][-1]:.1f}s")
    out: dict[str, Any] = {"passages": len(passages), "blocks": len(parts)}
    for name in names:
        total = sum(seconds[name])
        ratios = [a / s for a, s in zip(seconds["bare"], seconds[name], strict=True)]
        out[name] = {"seconds": round(total, 2), "passages_per_s": round(len(passages) / total, 2),
                     "speedup_vs_bare": round(sum(seconds["bare"]) / total, 2),
                     "speedup_median_block": round(float(np.median(ratios)), 2)}
    return out


def bench_query_batches(bare: Embedder, embedders: dict[str, Embedder], queries: list[str],
                        sizes: tuple[int, ...] = (1, 8, 32), per_size: int = 256,
                        log: Log = print) -> dict[str, Any]:
    """Query encoding cost per query at batch sizes 1, 8 and 32, each backend on the same
    questions: what micro-batching can gain at most. On a machine whose cores a single query
    already keeps busy, c=32 throughput can exceed c=1 throughput only by the ratio of the
    per-query cost at batch 1 to that at batch 32 (``batch_gain``)."""
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    out: dict[str, Any] = {"queries": per_size}
    for name, emb in {"bare": bare, **embedders}.items():
        emb.embed_batch(queries[:max(sizes)], "query")  # first calls allocate
        row: dict[str, Any] = {}
        for size in sizes:
            texts = queries[:per_size]
            c0, t0 = cpu(), time.perf_counter()
            for i in range(0, len(texts), size):
                emb.embed_batch(texts[i:i + size], "query")
            wall, used = time.perf_counter() - t0, cpu() - c0
            row[str(size)] = {"ms_per_query": round(wall * 1000 / len(texts), 2),
                              "cpu_ms_per_query": round(used * 1000 / len(texts), 2)}
        row["batch_gain"] = round(row[str(sizes[0])]["ms_per_query"]
                                  / row[str(sizes[-1])]["ms_per_query"], 2)
        out[name] = row
        log(f"query batches {name}: {json.dumps(row)}")
    return out


def bench_quality(zh: Path, en: Path, embedders: dict[str, Embedder], settings: Settings,
                  log: Log) -> dict[str, Any]:
    from qa.evaluation.retrieval import evaluate, load_squad

    out: dict[str, Any] = {}
    for name, emb in embedders.items():
        bench = load_squad(zh, [("xquad-en->zh", en)], name="xquad-zh->zh")
        res = evaluate(bench, emb, modes=["auto", "dense"], batch_size=settings.batch_size,
                       embed_context=settings.embed_context)
        out[name] = {sl: {"questions": v["questions"],
                          **{f"{m}_R@5": v["modes"][m]["R@5"] for m in ("auto", "dense")},
                          **{f"{m}_R@1": v["modes"][m]["R@1"] for m in ("auto", "dense")}}
                     for sl, v in res["slices"].items()}
        log(f"quality {name}: {json.dumps(out[name])}")
    if "torch" in out:
        for entry in out.values():
            for sl, v in entry.items():
                for m in ("auto", "dense"):
                    v[f"{m}_R@5_delta_vs_torch"] = round(
                        v[f"{m}_R@5"] - out["torch"][sl][f"{m}_R@5"], 4)
    return out


def bench_http(index_dir: Path, corpus: Path, backend: str, settings: Settings,
               bare: Embedder, emb: Embedder, queries: list[str], cfg: BenchConfig,
               work: Path, log: Log) -> dict[str, Any]:
    """In-process single queries first, then the server; disjoint query slices per level."""
    from qa.evaluation import bench_http as h
    from qa.index.load import open_index
    from qa.index.manifest import current_generation
    from qa.index.vectors.faiss import FaissIndex, serve_single_threaded
    from qa.retrieve.search import Searcher

    # The server's thread settings, so that the in-process figures compare with its: without
    # them this process's OpenBLAS threads spun against the encoder's (searcher.search p95
    # 112 ms in process against 29 ms over HTTP in an earlier run).
    serve_single_threaded()

    gen = current_generation(index_dir)
    assert gen is not None
    vectors = np.load(gen / "vectors.npy")
    flat = FaissIndex(vectors.shape[1])
    flat.add(vectors)
    n = cfg.in_process_queries
    warm, base_qs, rest = queries[:5], queries[5:5 + n], queries[5 + n:]
    searcher = Searcher(open_index(index_dir, emb), emb)
    for q in warm:
        searcher.search(q, top_k=10)
        bare.embed_batch([q], "query")
    res: dict[str, Any] = {"in_process": {
        "bare_encode+faiss": h.in_process(lambda q: bare.embed_batch([q], "query"),
                                          lambda v: flat.search(v, 10), base_qs),
        f"{backend}_encode+faiss": h.in_process(lambda q: emb.embed_batch([q], "query"),
                                                 lambda v: flat.search(v, 10), base_qs),
        "searcher.search": h.in_process(lambda q: q, lambda q: searcher.search(q, top_k=10),
                                        base_qs),
    }}
    searcher.index.close()
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                       os.environ.get("PYTHONPATH")])),
           "QA_MODEL_CACHE_DIR": str(settings.model_cache_dir),
           "QA_MODEL": settings.model, "QA_ALLOW_DOWNLOAD": "false"}
    if backend == "hashing":
        env["QA_EMBEDDER"] = "hashing"
    else:
        env["QA_ENCODER_BACKEND"] = backend
    with h.serve(index_dir, corpus, env, work / f"server-{backend}.log") as server:
        res["startup_to_ready_s"] = round(server.startup_s, 2)
        h.load(server.url, [f"{q}?" for q in warm], 1, len(warm), 30)
        res["levels"] = {}
        for c, count in cfg.requests.items():
            # the c=1 level asks the in-process queries, so the two are comparable
            qs = base_qs if c == 1 else rest[:count]
            rest = rest if c == 1 else rest[count:]
            res["levels"][str(c)] = level = h.load_measured(server, qs, c, count,
                                                            cfg.level_seconds)
            log(f"http {backend} c={c}: {json.dumps(level)}")
        res["peak_rss_mb"] = h.peak_rss_mb(server.pid)
    levels, ip = res["levels"], res["in_process"]
    if levels.get("1", {}).get("p50_ms"):
        one = levels["1"]
        res["c1_p50_vs_bare_in_process"] = round(one["p50_ms"] / ip["bare_encode+faiss"]["p50_ms"], 2)
        res["c1_p50_vs_same_encoder_in_process"] = round(
            one["p50_ms"] / ip[f"{backend}_encode+faiss"]["p50_ms"], 2)
        if levels.get("32", {}).get("throughput_qps"):
            res["c32_vs_c1_throughput"] = round(levels["32"]["throughput_qps"]
                                                / one["throughput_qps"], 2)
    return res


def run_scale(n: int, log: Log) -> dict[str, Any] | None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "scale_bench.py"
    if not script.exists():
        return None
    log(f"scale_bench --n {n} ...")
    done = subprocess.run([sys.executable, str(script), "--n", str(n)], capture_output=True,
                          text=True, timeout=900, check=False)
    try:  # the script prints one indented JSON object
        return json.loads(done.stdout)
    except ValueError:
        return {"error": done.stderr[-500:]}


def run_bench(cfg: BenchConfig, settings: Settings, log: Log) -> dict[str, Any]:
    """Every measurement of the module docstring (or the ``cfg.sections`` asked for), in one
    process, one after the other."""
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    on = set(cfg.sections or SECTIONS)
    if "pipeline" in on:
        on.add("encoder")
    backends = cfg.backends if "encoder" in on else []
    pipeline_rows = cfg.pipeline_backends if "pipeline" in on else []
    quality_backends = cfg.quality_backends if "quality" in on else []
    http_backends = cfg.http_backends if "http" in on else []
    batch_backends = (http_backends + backends) if "batches" in on else []
    wanted = list(dict.fromkeys([pipeline_spec(b, settings)[0]
                                 for b in backends + pipeline_rows + quality_backends
                                 + http_backends + batch_backends]))
    results: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v)
                                          for k, v in cfg.__dict__.items()},
                               "machine": {"cpus": os.cpu_count(), "load_avg_1m_start": load1},
                               "sections": [s for s in SECTIONS if s in on]}
    needs_models = bool(on & {"encoder", "pipeline", "quality", "batches", "http"})
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        work = Path(tmp)
        if needs_models:
            _run_model_sections(cfg, settings, log, on, work, results, wanted, backends,
                                pipeline_rows, quality_backends, http_backends)
    if cfg.build_paragraphs and "build" in on:
        results["build_scale"] = bench_build_scale(cfg.data_dir, cfg.build_paragraphs, settings,
                                                   log,
                                                   real_encoders=cfg.build_real_encoders)
    if cfg.scale_n and "scale" in on:
        results["scale"] = run_scale(cfg.scale_n, log)
    results["machine"]["load_avg_1m_end"] = os.getloadavg()[0] if load1 is not None else None
    return results


def _run_model_sections(cfg: BenchConfig, settings: Settings, log: Log, on: set[str], work: Path,
                        results: dict[str, Any], wanted: list[str], backends: list[str],
                        pipeline_rows: list[str], quality_backends: list[str],
                        http_backends: list[str]) -> None:
    t0 = time.perf_counter()
    bare = _bare(settings, cfg.baseline)
    results["load_s"] = {"bare": round(time.perf_counter() - t0, 2)}
    embedders: dict[str, Embedder] = {}
    for b in wanted:
        if b == "torch" and cfg.baseline == "bare":
            embedders[b] = bare  # the same call: SentenceTransformer.encode, batch 32
            continue
        t0 = time.perf_counter()
        embedders[b] = _embedder(settings, b)
        results["load_s"][b] = round(time.perf_counter() - t0, 2)
        log(f"loaded {b} ({embedders[b].fingerprint[:40]}...) in {results['load_s'][b]}s")
    results["fingerprints"] = {b: e.fingerprint for b, e in embedders.items()}

    cmrc = _trim_squad(cfg.data_dir / "cmrc2018" / "cmrc2018_dev.json", work / "cmrc.json",
                       paragraphs=cfg.passages)
    passages = _paragraphs(cmrc)
    if "encoder" in on:
        results["encoder"] = bench_encoders(
            bare, {b: embedders[b] for b in backends if b != "torch"}, passages, cfg.blocks,
            log)
    from qa.evaluation.retrieval import load_squad

    cmrc_bench = load_squad(cmrc, name="cmrc")
    if "pipeline" in on:
        # A "torch" row is the bare model: the first encoder alone.
        rows = {b: embedders[pipeline_spec(b, settings)[0]] for b in pipeline_rows}
        results["pipeline"] = bench_pipeline(
            cmrc_bench.corpus_dir, len(passages), work, rows,
            results["encoder"]["bare"]["passages_per_s"], settings, log)

    xq = cfg.data_dir / "xquad"
    zh = _trim_squad(xq / "xquad.zh.json", work / "xquad.zh.json", articles=cfg.xquad_articles)
    en = _trim_squad(xq / "xquad.en.json", work / "xquad.en.json", articles=cfg.xquad_articles)
    if "quality" in on:
        results["quality"] = bench_quality(zh, en, {b: embedders[b] for b in quality_backends},
                                           settings, log)

    queries = _questions(xq / "xquad.en.json", xq / "xquad.zh.json")
    if "batches" in on:
        results["query_batches"] = bench_query_batches(
            bare, {b: embedders[b] for b in http_backends + backends
                   if b in embedders and embedders[b] is not bare},
            queries[-cfg.batch_queries:], log=log)
    if "http" in on:
        results["http"] = {}
        for b in http_backends:
            index_dir = work / f"index-{b}"
            if not index_dir.exists():
                from qa.index.build import build_index

                build_index(cmrc_bench.corpus_dir, index_dir, embedders[b],
                            batch_size=settings.batch_size)
            # The same questions for every backend: each server is a fresh process and each
            # in-process searcher a fresh object, so no query cache carries over.
            results["http"][b] = bench_http(index_dir, cmrc_bench.corpus_dir, b, settings, bare,
                                            embedders[b], queries, cfg, work, log)
    del embedders, bare
    gc.collect()
