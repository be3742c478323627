"""A generation's manifest and the CURRENT pointer that names the live generation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# 2: the chunk store keeps each document's text as read, its pages and media type, and the
# page of each chunk (PDF, Word, web pages and OCR, issue 9).
FORMAT = "qa-index/2"


def current_generation(index_dir: Path) -> Path | None:
    pointer = index_dir / "CURRENT"
    if not pointer.exists():
        return None
    gen = index_dir / pointer.read_text(encoding="utf-8").strip()
    return gen if (gen / "manifest.json").exists() else None


def needs_build(index_dir: Path) -> bool:
    """No live generation, or one in an older format that this qa cannot load."""
    gen = current_generation(index_dir)
    return gen is None or read_manifest(gen).get("format") != FORMAT


def read_manifest(gen: Path) -> dict[str, Any]:
    return json.loads((gen / "manifest.json").read_text(encoding="utf-8"))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


