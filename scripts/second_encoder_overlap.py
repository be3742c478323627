"""Where the second encoder's time goes in one English search, and what running it beside e5
saves at concurrency 1 (in process; docs/PERFORMANCE.md, "The second encoder's cost").

    python scripts/second_encoder_overlap.py [--profile]

Indexes the shipped corpus with both encoders into a temporary folder, then searches distinct
XQuAD English questions with one ``Searcher`` in three variants, interleaved in blocks so a
busy minute on a shared machine hits each: e5 alone, USE after e5 (``SecondView.begin``
disabled), USE beside e5 (the service). Prints the p50 of each and their ratios as JSON.
``--profile`` adds the cProfile cumulative seconds of the second encoder's steps over 120
searches (USE beside e5 off, so its time is counted in this thread).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.evaluation.bench import _questions  # noqa: E402
from qa.index.build import build_index  # noqa: E402
from qa.index.load import open_index  # noqa: E402
from qa.index.vectors.faiss import serve_single_threaded  # noqa: E402
from qa.retrieve.search import Searcher  # noqa: E402
from qa.retrieve.second import SecondView  # noqa: E402
from qa.service.wiring import make_embedder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--block-size", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    embedder = make_embedder(Settings(allow_download=False))
    english = _questions(a.data_dir / "xquad" / "xquad.en.json")
    out: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="qa-second-overlap-") as tmp:
        build_index(ROOT / "corpus", Path(tmp) / "index", embedder)
        serve_single_threaded()
        searcher = Searcher(open_index(Path(tmp) / "index", embedder), embedder)
        second, begin = searcher.second, SecondView.begin
        for q in english[:10]:
            searcher.search(q, top_k=10)
        out["loadavg_start"] = os.getloadavg()
        took: dict[str, list[float]] = {"e5 alone": [], "USE after e5": [], "USE beside e5": []}
        i = 10
        for b in range(a.blocks):
            for name in list(took)[::(1 if b % 2 == 0 else -1)]:
                searcher.second = None if name == "e5 alone" else second
                SecondView.begin = begin if name == "USE beside e5" else (  # type: ignore
                    lambda self, *args: None)
                for q in english[i:i + a.block_size]:
                    t0 = time.perf_counter()
                    searcher.search(q, top_k=10)
                    took[name].append(time.perf_counter() - t0)
                i += a.block_size
        p50 = {k: statistics.median(v) * 1000 for k, v in took.items()}
        out["searches_per_variant"] = len(took["e5 alone"])
        out["p50_ms"] = {k: round(v, 2) for k, v in p50.items()}
        out["p50_ratio_to_e5_alone"] = {k: round(v / p50["e5 alone"], 2) for k, v in p50.items()}
        out["loadavg_end"] = os.getloadavg()
        if a.profile:
            searcher.second = second
            SecondView.begin = lambda self, *args: None  # type: ignore
            prof = cProfile.Profile()
            prof.enable()
            for q in english[i:i + 120]:
                searcher.search(q, top_k=10)
            prof.disable()
            stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
            wanted = {"search": "search", "embed_query": "e5 query embedding",
                      "apply": "second encoder, all", "_prefetch": "USE call",
                      "translated": "translated leg", "fuse": "fusion"}
            out["profile_cumulative_s"] = {
                wanted[fn]: round(v[3], 2) for (path, _, fn), v in stats.items()
                if fn in wanted and "qa/retrieve/se" in path}
        searcher.index.store.close()
    SecondView.begin = begin  # type: ignore
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
