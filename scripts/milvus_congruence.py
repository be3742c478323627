"""Congruence of the Milvus backend with the local one on a benchmark (docs/SCALING.md).

    python scripts/milvus_congruence.py --bench corpus --embedder hashing
    python scripts/milvus_congruence.py --bench xquad --bench cmrc --out /tmp/cong.json
    python scripts/milvus_congruence.py --bench corpus --milvus-server   # over gRPC

Prints, per benchmark, mode and slice: questions, share with the same top-5, R@1/R@5 and
search latency (p50, p95; concurrency 1, the two backends asked each question in turn) of
each backend (a = FAISS + local BM25, b = Milvus). The Milvus side is read as a replica
reads it: from the published generation alone, not from its index folder. By default
Milvus is milvus-lite as a local file in this process; ``--milvus-server`` starts
``qa milvus-server`` on a free port for the run, ``--milvus-uri`` uses a running server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.evaluation.congruence import compare_backends  # noqa: E402
from qa.evaluation.retrieval import named_benchmark  # noqa: E402
from qa.index.vectors.store import VectorStore  # noqa: E402
from qa.service.wiring import make_embedder  # noqa: E402


@contextlib.contextmanager
def _milvus(args: argparse.Namespace, tmp: str) -> Iterator[str]:
    """The Milvus URI of this run: a file, a server started here, or the one given."""
    if args.milvus_uri:
        yield args.milvus_uri
        return
    if not args.milvus_server:
        yield f"{tmp}/m.db"
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-m", "qa", "milvus-server", "--data-dir",
                             f"{tmp}/milvus", "--port", str(port)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("qa milvus-server did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", action="append", choices=["corpus", "xquad", "cmrc"])
    ap.add_argument("--embedder", default="sentence-transformers",
                    choices=["sentence-transformers", "hashing"])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=None, help="questions per slice")
    ap.add_argument("--modes", default="auto,dense,lexical")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--milvus-server", action="store_true",
                    help="start `qa milvus-server` for the run and use it over gRPC")
    ap.add_argument("--milvus-uri", help="a running Milvus server (http://host:port)")
    args = ap.parse_args()
    embedder = make_embedder(Settings(embedder=args.embedder, allow_download=False))
    results = []
    for name in args.bench or ["corpus"]:
        bench = named_benchmark(name, args.data_dir, ROOT / "corpus", ROOT / "tests" / "data",
                                limit=args.limit)
        with tempfile.TemporaryDirectory() as tmp, _milvus(args, tmp) as uri:
            r = compare_backends(bench, embedder, VectorStore(),
                                 VectorStore(backend="milvus", uri=uri,
                                             collection=f"qa_congruence_{name}"),
                                 modes=args.modes.split(","))
        results.append(r)
        for mode, slices in r["modes"].items():
            for sl, v in slices.items():
                print(json.dumps({"bench": name, "mode": mode, "slice": sl,
                                  "questions": v["questions"], "same_top5": v["same_top_k"],
                                  "max_score_diff": v["max_score_diff"],
                                  "local": {k: round(v["a"][k], 4) for k in ("R@1", "R@5", "p50_ms", "p95_ms")},
                                  "milvus": {k: round(v["b"][k], 4) for k in ("R@1", "R@5", "p50_ms", "p95_ms")}},
                                 ensure_ascii=False), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
