"""What the second encoder costs: per indexed passage, per query, and over HTTP at c=1.

    python scripts/second_encoder_cost.py --data-dir ../shared/data

* passages: e5 (the configured backend) and USE each embed the same CMRC 2018 dev
  paragraphs (``--passages``), in alternating blocks; CPU ms per passage (all threads).
* queries: the parts the second encoder adds to one English search, in this process, in
  CPU ms: USE embedding the question and its words in two calls and in the one call a
  search makes, and a whole search (e5's query embedding included).
* HTTP: two real ``qa serve`` processes over the shipped corpus, one with
  ``QA_SECOND_ENCODER=none`` and one with ``use-multilingual``, both on the same index
  (built with both encoders; the e5-only server ignores the USE files), loaded one request
  at a time with the same distinct XQuAD questions, English and Chinese separately, in
  alternating rounds so that a busy minute on a shared machine hits both. Prints one JSON
  object; docs/PERFORMANCE.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.evaluation import bench_http as h  # noqa: E402
from qa.evaluation.bench import _questions  # noqa: E402
from qa.index.build import build_index  # noqa: E402
from qa.service.wiring import make_embedder  # noqa: E402


def _passages(data_dir: Path, n: int) -> list[str]:
    data = json.loads((data_dir / "cmrc2018" / "cmrc2018_dev.json").read_text("utf-8"))["data"]
    return [p["context"] for a in data for p in a["paragraphs"]][:n]


def per_passage(first, second, passages: list[str], blocks: int = 3) -> dict:
    times: dict[str, float] = {"e5": 0.0, "use": 0.0}
    size = max(1, len(passages) // blocks)
    for b in range(blocks):
        part = passages[b * size:(b + 1) * size]
        for name, enc in (("e5", first), ("use", second))[::(1 if b % 2 == 0 else -1)]:
            t0 = time.process_time()  # CPU time, all threads: robust to other jobs
            for i in range(0, len(part), 32):
                enc.embed_batch(part[i:i + 32], "passage")
            times[name] += time.process_time() - t0
    n = size * blocks
    return {"passages": n, **{f"{k}_cpu_ms_per_passage": round(1000 * v / n, 2)
                              for k, v in times.items()}}


def per_query(index_dir: Path, embedder, questions: list[str]) -> dict:
    """The second encoder's steps of one English search, timed separately."""
    from qa.index.load import open_index
    from qa.index.vectors.faiss import serve_single_threaded
    from qa.retrieve.search import Searcher
    from qa.retrieve.translate import english_terms

    serve_single_threaded()
    searcher = Searcher(open_index(index_dir, embedder), embedder)
    view = searcher.second
    assert view is not None
    steps = {"use_question_ms": 0.0, "use_words_ms": 0.0, "use_both_one_call_ms": 0.0,
             "search_total_ms": 0.0}
    # Process CPU time: the steps are single-threaded here (serve_single_threaded, one
    # BLAS thread for USE's questions), so this is their cost without other jobs' waits.
    clock = time.process_time
    for q in questions:
        t0 = clock()
        view.embedder.embed_batch([q], "query")
        t1 = clock()
        view.embedder.embed_batch(english_terms(q), "query")
        t2 = clock()
        # What a search runs (SecondView._prefetch): the question and its words at once.
        view.embedder.embed_batch([q, *english_terms(q)], "query")
        t3 = clock()
        searcher.search(q, top_k=10)
        t4 = clock()
        steps["use_question_ms"] += t1 - t0
        steps["use_words_ms"] += t2 - t1
        steps["use_both_one_call_ms"] += t3 - t2
        steps["search_total_ms"] += t4 - t3
    searcher.index.store.close()
    return {"questions": len(questions),
            **{k.replace("_ms", "_cpu_ms"): round(1000 * v / len(questions), 2)
               for k, v in steps.items()},
            "words_per_question": round(sum(len(english_terms(q)) for q in questions)
                                        / len(questions), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--passages", type=int, default=240)
    ap.add_argument("--requests", type=int, default=60, help="per language, round and server")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--http-only", action="store_true",
                    help="skip the per-passage and per-query parts")
    ap.add_argument("--index", type=Path,
                    help="an index of the shipped corpus built with both encoders (default: "
                         "build one in a temporary folder)")
    a = ap.parse_args()
    # The machine is shared: the load average says how much of the wall time is waiting.
    out: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                 "loadavg_start": os.getloadavg()}
    ensemble = make_embedder(Settings(allow_download=False))
    if not a.http_only:
        out["per_passage"] = per_passage(ensemble.primary, ensemble.second,
                                         _passages(a.data_dir, a.passages))
    xq = a.data_dir / "xquad"
    english = _questions(xq / "xquad.en.json")
    chinese = _questions(xq / "xquad.zh.json")
    with tempfile.TemporaryDirectory(prefix="qa-second-cost-") as tmp:
        work = Path(tmp)
        index = a.index or work / "index"
        if a.index is None:
            build_index(ROOT / "corpus", index, ensemble)
        if not a.http_only:
            out["per_english_query"] = per_query(index, ensemble, english[-200:])
        servers = {}
        results: dict[str, dict[str, list[float]]] = {}
        with h.serve(index, ROOT / "corpus", {"QA_SECOND_ENCODER": "none"},
                     work / "none.log", cwd=ROOT) as servers["none"], \
                h.serve(index, ROOT / "corpus",
                        {"QA_SECOND_ENCODER": "use-multilingual"}, work / "use.log",
                        cwd=ROOT) as servers["use-multilingual"]:
            for s in servers.values():
                h.load(s.url, english[:10] + chinese[:10], 1, 20, 60)
            n = a.requests
            for r in range(a.rounds):
                order = list(servers.items())[::(1 if r % 2 == 0 else -1)]
                for lang, qs in (("en", english), ("zh", chinese)):
                    batch = qs[10 + r * n:10 + (r + 1) * n]
                    for name, s in order:
                        level = h.load_measured(s, batch, 1, n, 600)
                        got = results.setdefault(name, {})
                        got.setdefault(f"{lang}_p50_ms", []).append(level["p50_ms"])
                        # CPU per request: what the server spent, all its threads; far less
                        # sensitive than wall time to other jobs on a shared machine.
                        got.setdefault(f"{lang}_cpu_ms", []).append(
                            level.get("server_cpu_ms_per_request"))
        out["http_c1_rounds"] = results
        out["http_c1_median_of_rounds"] = {
            name: {k: round(float(np.median([x for x in v if x is not None])), 2)
                   for k, v in got.items()} for name, got in results.items()}
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
