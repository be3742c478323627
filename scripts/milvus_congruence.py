"""Congruence of the Milvus backend with the local one on a benchmark (docs/SCALING.md).

    python scripts/milvus_congruence.py --bench corpus --embedder hashing
    python scripts/milvus_congruence.py --bench xquad --bench cmrc --out /tmp/cong.json

Prints, per benchmark, mode and slice: questions, share with the same top-5, R@1/R@5 and
median search latency of each backend (a = FAISS + local BM25, b = milvus-lite).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.evaluation.congruence import compare_backends  # noqa: E402
from qa.evaluation.retrieval import named_benchmark  # noqa: E402
from qa.index.vectors.store import VectorStore  # noqa: E402
from qa.service.wiring import make_embedder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", action="append", choices=["corpus", "xquad", "cmrc"])
    ap.add_argument("--embedder", default="sentence-transformers",
                    choices=["sentence-transformers", "hashing"])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=None, help="questions per slice")
    ap.add_argument("--modes", default="auto,dense,lexical")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    embedder = make_embedder(Settings(embedder=args.embedder, allow_download=False))
    results = []
    for name in args.bench or ["corpus"]:
        bench = named_benchmark(name, args.data_dir, ROOT / "corpus", ROOT / "tests" / "data",
                                limit=args.limit)
        with tempfile.TemporaryDirectory() as tmp:
            r = compare_backends(bench, embedder, VectorStore(),
                                 VectorStore(backend="milvus", uri=f"{tmp}/m.db"),
                                 modes=args.modes.split(","))
        results.append(r)
        for mode, slices in r["modes"].items():
            for sl, v in slices.items():
                print(json.dumps({"bench": name, "mode": mode, "slice": sl,
                                  "questions": v["questions"], "same_top5": v["same_top_k"],
                                  "max_score_diff": v["max_score_diff"],
                                  "local": {k: round(v["a"][k], 4) for k in ("R@1", "R@5", "p50_ms")},
                                  "milvus": {k: round(v["b"][k], 4) for k in ("R@1", "R@5", "p50_ms")}},
                                 ensure_ascii=False), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
