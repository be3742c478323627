"""What checking a generation costs at a million 384-d float32 vectors (docs/ARCHITECTURE.md).

Writes vectors.npy (1M x 384 float32, 1,536 MB) and the matching flat vectors.faiss into a
scratch folder, then times: recording the checksums (what a build adds), the quick check
loading does (sizes and 64 sampled blocks per file above 64 MiB), and the full check of
`qa index --verify`, each with the page cache warm and (where posix_fadvise can drop it)
cold. Prints one JSON object.

    PYTHONPATH=. python scripts/integrity_cost.py --rows 1000000 --dir /tmp/integrity
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np


def drop_cache(folder: Path) -> None:
    for f in folder.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(fn, *args, **kwargs) -> float:
    started = time.perf_counter()
    fn(*args, **kwargs)
    return round(time.perf_counter() - started, 3)


def main() -> None:
    from qa.index.integrity import record_files, verify_files
    from qa.index.vectors.faiss import FaissIndex

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/qa-integrity-cost"))
    args = parser.parse_args()
    gen = args.dir / "g-measure"
    shutil.rmtree(args.dir, ignore_errors=True)
    gen.mkdir(parents=True)
    rng = np.random.default_rng(0)
    vectors = np.empty((args.rows, args.dim), np.float32)
    for lo in range(0, args.rows, 100_000):
        block = rng.standard_normal((min(100_000, args.rows - lo), args.dim), np.float32)
        vectors[lo:lo + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    np.save(gen / "vectors.npy", vectors)
    index = FaissIndex(args.dim, "flat")
    index.add(vectors)
    index.save(gen / "vectors.faiss")
    del vectors, index
    sizes = {f.name: f.stat().st_size for f in gen.iterdir()}
    out: dict[str, object] = {"rows": args.rows, "dim": args.dim,
                              "mb": {k: round(v / 2**20) for k, v in sizes.items()}}
    started = time.perf_counter()
    files = record_files(gen)
    out["record_s"] = round(time.perf_counter() - started, 3)
    manifest = {"files": files}
    for cache in ("warm", "cold"):
        if cache == "cold":
            drop_cache(gen)
        out[f"quick_{cache}_s"] = timed(verify_files, gen, manifest, full=False)
        if cache == "cold":
            drop_cache(gen)
        out[f"full_{cache}_s"] = timed(verify_files, gen, manifest, full=True)
    total = sum(sizes.values()) / 2**20
    out["full_warm_mb_per_s"] = round(total / out["full_warm_s"])  # type: ignore[operator]
    print(json.dumps(out))
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
