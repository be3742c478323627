"""Checksums of a generation's files, recorded in its manifest and checked before use.

A build records every file's size, SHA-256 and a sampled hash (``SAMPLE_BLOCKS`` blocks of
``SAMPLE_BYTES`` spread evenly over the file) after the files are written and fsynced; the
manifest itself carries a checksum of its own content. Loading checks what it can afford:
every file's size, the whole hash of files up to ``full_limit`` bytes and the sampled hash of
larger ones (at a million 384-d vectors a whole hash of every file costs seconds, a sample
milliseconds: docs/ARCHITECTURE.md). ``qa index --verify`` and every build that reuses a
generation's vectors hash everything. A failure is an ``IndexCorrupt`` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from qa.errors import IndexCorrupt

log = logging.getLogger("qa.index")

SAMPLE_BLOCKS = 64
SAMPLE_BYTES = 64 * 1024
# Files up to this size are hashed whole at load: every file of a generation of 100k chunks.
FULL_LIMIT = 64 * 1024 * 1024
_CHUNK = 4 * 1024 * 1024


def damaged(gen: Path, name: str, what: str) -> IndexCorrupt:
    """The error for a damaged file: names the file inside the generation (never an absolute
    path, which stays in the log) and says how to repair it."""
    return IndexCorrupt(f"the index file {name} of generation {gen.name} is damaged ({what}); "
                        "run `qa index` to rebuild it", file=name)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def sampled_sha256(path: Path, size: int) -> str:
    """SHA-256 of the size and ``SAMPLE_BLOCKS`` evenly spread blocks: catches truncation,
    most overwrites and most reordering of a large file for the cost of 4 MiB of reads."""
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        if size <= SAMPLE_BLOCKS * SAMPLE_BYTES:
            while block := fh.read(_CHUNK):  # the whole file, a chunk at a time
                h.update(block)
            return h.hexdigest()
        step = (size - SAMPLE_BYTES) / (SAMPLE_BLOCKS - 1)
        for i in range(SAMPLE_BLOCKS):
            fh.seek(int(i * step))
            h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()


def record_files(gen: Path) -> dict[str, dict[str, Any]]:
    """Size, SHA-256 and sampled hash of every file of a generation but the manifest."""
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(gen.iterdir()):
        if f.is_file() and f.name != "manifest.json":
            size = f.stat().st_size
            out[f.name] = {"size": size, "sha256": sha256_file(f),
                           "sample_sha256": sampled_sha256(f, size)}
    return out


def manifest_checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


def check_manifest(gen: Path, manifest: dict[str, Any]) -> None:
    """The manifest's own checksum (absent in generations built before checksums)."""
    recorded = manifest.get("checksum")
    if recorded is not None and recorded != manifest_checksum(manifest):
        raise damaged(gen, "manifest.json", "its checksum does not match its content")


def verify_files(gen: Path, manifest: dict[str, Any], *, full: bool = False,
                 full_limit: int = FULL_LIMIT) -> int:
    """Check every recorded file of ``gen``: size always, then the whole hash (``full`` or
    small files) or the sampled one. Returns the bytes hashed; raises IndexCorrupt."""
    files = manifest.get("files")
    if files is None:
        log.warning("generation %s records no checksums (built before they were); "
                    "`qa index` rebuilds it with them", gen.name)
        return 0
    hashed = 0
    for name, meta in files.items():
        path = gen / name
        try:
            size = path.stat().st_size
        except OSError:
            raise damaged(gen, name, "the file is missing") from None
        if size != meta["size"]:
            raise damaged(gen, name, f"{size} bytes instead of {meta['size']}")
        try:
            if full or size <= full_limit:
                ok, hashed = sha256_file(path) == meta["sha256"], hashed + size
            else:
                ok = sampled_sha256(path, size) == meta["sample_sha256"]
                hashed += min(size, SAMPLE_BLOCKS * SAMPLE_BYTES)
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
            raise damaged(gen, name, "the file cannot be read") from None
        if not ok:
            raise damaged(gen, name, "its checksum does not match the manifest")
    return hashed
