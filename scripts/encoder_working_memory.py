"""The encoders' working memory during a build: anonymous memory the default embedder keeps
after encoding the longest CMRC 2018 dev paragraphs (docs/PERFORMANCE.md, "With the real
encoders").

    python scripts/encoder_working_memory.py [--data-dir ../shared/data]

ONNX Runtime keeps the buffers of its largest call for the next one, so this is a constant
of a build (bounded by qa.encoders.onnx.TOKEN_BUDGET), not something that grows with the
corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.service.wiring import make_embedder  # noqa: E402


def anonymous_mib() -> float:
    """Resident minus file-backed pages of this process, in MiB."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        fields = fh.read().split()
    return (int(fields[1]) - int(fields[2])) * 4096 / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    emb = make_embedder(Settings(allow_download=False))
    second = getattr(emb, "second", None)
    emb.embed_batch(["预热"], "passage")
    if second is not None:
        second.embed_batch(["预热"], "passage")
    data = json.loads((args.data_dir / "cmrc2018" / "cmrc2018_dev.json").read_text("utf-8"))
    paragraphs = sorted((p["context"] for a in data["data"] for p in a["paragraphs"]),
                        key=len, reverse=True)
    before = anonymous_mib()
    emb.embed_batch(paragraphs[:64], "passage")
    after_first = anonymous_mib()
    line = (f"anonymous after loading: {before:.0f} MiB; the first encoder on the 64 longest "
            f"paragraphs: +{after_first - before:.0f} MiB")
    if second is not None:
        second.embed_batch(paragraphs[:256], "passage")
        line += f"; the second on 256: +{anonymous_mib() - after_first:.0f} MiB"
    print(line)


if __name__ == "__main__":
    main()
