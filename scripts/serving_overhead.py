"""What the service costs around the encoder: a real ``qa serve`` with the hashing embedder
(whose "encoding" is nearly free) over the CMRC 2018 dev paragraphs, loaded at concurrency
1, 8 and 32 with distinct XQuAD questions. Prints one JSON object: per level the throughput,
latency and the server's CPU milliseconds per request (all its threads), beside the same
searches in this process without HTTP.

Compare serving code side by side with ``--server-repo`` (the server runs that checkout's
``qa``; the client, the index and the in-process figure are this checkout's)::

    python scripts/serving_overhead.py --data-dir ../shared/data
    git worktree add /tmp/qa-old <commit>
    python scripts/serving_overhead.py --server-repo /tmp/qa-old
    python scripts/serving_overhead.py --env OPENBLAS_NUM_THREADS=1   # an environment variant
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa.encoders.base import HashingEmbedder  # noqa: E402
from qa.evaluation import bench_http as h  # noqa: E402
from qa.evaluation.bench import _questions, _trim_squad  # noqa: E402
from qa.evaluation.retrieval import load_squad  # noqa: E402
from qa.index.build import build_index, open_index  # noqa: E402
from qa.index.vectors.faiss import serve_single_threaded  # noqa: E402
from qa.retrieve.search import Searcher  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--paragraphs", type=int, default=None, help="CMRC paragraphs (all: 848)")
    ap.add_argument("--requests", type=int, default=600, help="per level")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    ap.add_argument("--server-repo", type=Path, default=Path(__file__).resolve().parents[1],
                    help="the checkout whose qa the server runs")
    a = ap.parse_args()

    questions = _questions(a.data_dir / "xquad" / "xquad.en.json",
                           a.data_dir / "xquad" / "xquad.zh.json")
    out: dict = {"requests_per_level": a.requests, "server_env": a.env,
                 "server_repo": str(a.server_repo.resolve())}
    with tempfile.TemporaryDirectory(prefix="qa-serving-") as tmp:
        work = Path(tmp)
        cmrc = _trim_squad(a.data_dir / "cmrc2018" / "cmrc2018_dev.json", work / "cmrc.json",
                           paragraphs=a.paragraphs)
        bench = load_squad(cmrc, name="cmrc")  # owns the corpus folder: keep it alive
        corpus = bench.corpus_dir
        emb = HashingEmbedder()
        report = build_index(corpus, work / "index", emb)
        out["index"] = {"chunks": report.chunks, "sentences": report.sentences_embedded}

        serve_single_threaded()
        searcher = Searcher(open_index(work / "index", emb), emb)
        warm, rest = questions[:10], questions[10:]
        for q in warm:
            searcher.search(q, top_k=10)
        out["in_process_search"] = h.in_process(
            lambda q: q, lambda q: searcher.search(q, top_k=10), rest[:a.requests])
        searcher.index.close()

        env = {"QA_EMBEDDER": "hashing", "PYTHONPATH": str(a.server_repo.resolve()),
               **dict(e.split("=", 1) for e in a.env)}
        # the server's working directory is its checkout: `python -m qa` imports from there
        with h.serve(work / "index", corpus, env, work / "server.log",
                     cwd=a.server_repo.resolve()) as server:
            h.load(server.url, warm, 1, len(warm), 30)
            out["startup_to_ready_s"] = round(server.startup_s, 2)
            for i, c in enumerate((1, 8, 32)):
                qs = rest[(i + 1) * a.requests:(i + 2) * a.requests]
                out[f"http_c{c}"] = h.load_measured(server, qs, c, a.requests, 60)
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
