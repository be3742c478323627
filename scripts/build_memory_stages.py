"""A build's memory stage by stage: resident and anonymous MiB (and their peaks so far) at the
end of each stage of ``BuildReport.stages``, for a corpus folder, with the hashing fake.

    PYTHONPATH=. python scripts/build_memory_stages.py CORPUS_DIR INDEX_DIR

The corpus of ``qa bench --only build`` is written by
``qa.evaluation.bench_build.synthetic_corpus`` (``--work DIR`` keeps it). INDEX_DIR is
replaced. docs/PERFORMANCE.md ("Before and after the vectors went to disk").
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import qa.index.build as build
from qa.encoders.base import HashingEmbedder
from qa.evaluation.bench_build import PeakRss, _memory_mb


def main() -> None:
    corpus, index = Path(sys.argv[1]), Path(sys.argv[2])
    shutil.rmtree(index, ignore_errors=True)
    emb = HashingEmbedder()
    emb.embed_batch(["预热一下。"], "passage")
    lap = build._Clock.lap
    peak = PeakRss()

    def report(clock: build._Clock, name: str) -> None:
        lap(clock, name)
        rss, anon = _memory_mb()
        sys.stdout.write(f"{name:12s} rss {rss:7.1f} anon {anon:7.1f} peak {peak.peak:7.1f} "
                         f"peak anon {peak.peak_anon:7.1f} MiB\n")
        sys.stdout.flush()

    build._Clock.lap = report  # type: ignore[method-assign]
    rss, anon = _memory_mb()
    sys.stdout.write(f"{'start':12s} rss {rss:7.1f} anon {anon:7.1f}\n")
    with peak:
        build.build_index(corpus, index, emb)
    sys.stdout.write(f"{'end':12s} peak {peak.peak:7.1f} peak anon {peak.peak_anon:7.1f} MiB\n")


if __name__ == "__main__":
    main()
