"""What each retrieval technique adds: the same index re-scored with parts switched off.

    python scripts/ablation.py --benchmark xquad --benchmark corpus --json ablation.json

Variants (cumulative): paragraph vectors only; + sentence max-sim; + English hubness
correction (= the default dense leg); and the fusion modes on top (see docs/EVAL.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.evaluation.retrieval import evaluate, named_benchmark, strip_details  # noqa: E402
from qa.retrieve.search import FusionParams  # noqa: E402
from qa.service.wiring import make_embedder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--benchmark", action="append", default=None)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    base = FusionParams()
    variants = {
        "paragraph-only": replace(base, sentence_weight=0.0, hub_penalty_en=0.0,
                                  lexical_weight_en=0.0),
        "+sentences": replace(base, hub_penalty_en=0.0, lexical_weight_en=0.0),
        "+hubness-en": replace(base, lexical_weight_en=0.0),
    }
    embedder = make_embedder(Settings(allow_download=False))
    out = []
    for name in args.benchmark or ["xquad", "corpus"]:
        bench = named_benchmark(name, args.data_dir, ROOT / "corpus", ROOT / "tests/data",
                                args.limit)
        res = strip_details(evaluate(bench, embedder, modes=["dense", "auto"],
                                     variants=variants))
        out.append(res)
        rows = [("default", res["slices"]), *res["variants"].items()]
        for variant, slices in rows:
            for sl, entry in slices.items():
                for mode, m in entry["modes"].items():
                    if "R@1" in m:
                        print(f"{name:7s} {variant:15s} {sl:22s} {mode:6s} "
                              f"R@1 {m['R@1']:.3f} R@5 {m['R@5']:.3f} R@10 {m['R@10']:.3f}",
                              flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
