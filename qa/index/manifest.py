"""A generation's manifest and the CURRENT pointer that names the live generation."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from qa.index.integrity import check_manifest, damaged, manifest_checksum, record_files

# 2: the chunk store keeps each document's text as read, its pages and media type, and the
# page of each chunk (PDF, Word, web pages and OCR, issue 9).
FORMAT = "qa-index/2"
log = logging.getLogger("qa.index")


# What a build names a generation; CURRENT naming anything else (a damaged pointer, a path
# out of the index folder) names none.
_GENERATION = re.compile(r"g-[0-9A-Za-z-]{1,64}")


def generation_name(text: str | bytes) -> str | None:
    """The generation a CURRENT file's content names, if it is a valid name."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    name = text.strip()
    return name if _GENERATION.fullmatch(name) else None


def current_generation(index_dir: Path) -> Path | None:
    try:
        name = generation_name((index_dir / "CURRENT").read_bytes())
    except OSError:
        return None
    if name is None:
        return None
    gen = index_dir / name
    return gen if (gen / "manifest.json").exists() else None


def needs_build(index_dir: Path) -> bool:
    """No live generation, or one in an older format that this qa cannot load."""
    gen = current_generation(index_dir)
    try:
        return gen is None or read_manifest(gen).get("format") != FORMAT
    except Exception:  # noqa: BLE001 - an unreadable manifest: qa index rebuilds it
        return True


def read_manifest(gen: Path) -> dict[str, Any]:
    """The manifest, checked against its own checksum; an unreadable or altered one is an
    IndexCorrupt naming manifest.json."""
    try:
        manifest = json.loads((gen / "manifest.json").read_bytes().decode("utf-8"))
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are both
        log.warning("cannot read %s: %s", gen / "manifest.json", exc)
        raise damaged(gen, "manifest.json", "it cannot be read as JSON") from None
    if not isinstance(manifest, dict):
        raise damaged(gen, "manifest.json", "it is not a JSON object")
    check_manifest(gen, manifest)
    return manifest


def write_manifest(gen: Path, manifest: dict[str, Any]) -> None:
    """Record every file's checksum in the manifest and write it last, fsynced: the other
    files are complete on disk before anything vouches for them."""
    for f in gen.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    # Through JSON once, so the checksum is of exactly what a reader will parse.
    manifest = json.loads(json.dumps({**manifest, "files": record_files(gen)}))
    manifest["checksum"] = manifest_checksum(manifest)
    path = gen / "manifest.json"
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    fsync_dir(gen)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
