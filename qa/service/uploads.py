"""The corpus folder as uploads and removals see it: safe file names, which files a reader
takes, metadata sidecars, and atomic writes (a temporary file renamed into place), so a build
reading the folder at the same moment sees a document whole or not at all.

Plain functions on plain arguments: ``qa.service.writes`` adds the status bookkeeping and the
index build on top, for the HTTP routes and the CLI alike.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from qa.errors import Conflict, InvalidRequest, PayloadTooLarge, UnsupportedType
from qa.index.manifest import fsync_dir
from qa.ingest.corpus import SUFFIXES

META_SUFFIX = ".meta.json"
# Characters that are path syntax, shell or URL trouble, or refused by other file systems.
_AWKWARD = re.compile(r'[<>:"|?*#%]')
_MAX_NAME_BYTES = 200  # file systems allow 255; the sidecar adds ".meta.json"
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_META_LIMITS = {"title": 500, "date": 10, "source": 2000, "type": 100}
_COPY_CHUNK = 1 << 20

# Uploads and removals in this process check for a clash and rename under one lock, so two
# uploads of one name cannot both win.
_corpus_lock = threading.Lock()


def supported(filename: str) -> bool:
    """Whether some reader of the registry (``qa.ingest.readers.EXTENSIONS``) takes a file of
    this name; its content is checked when it is read."""
    return Path(filename).suffix.lower() in SUFFIXES


def supported_types() -> str:
    return ", ".join(SUFFIXES)


def safe_name(filename: str | None) -> str:
    """A corpus file name made from a client's: folders flattened (``a/b.txt`` -> ``a_b.txt``,
    ``../x.txt`` -> ``x.txt``), no ``..``, no leading dot, no control or format characters,
    CJK and other letters kept. The doc_id is its stem."""
    name = unicodedata.normalize("NFC", filename or "")
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    parts = [p.strip() for p in re.split(r"[/\\]", name)]
    name = "_".join(p for p in parts if p not in ("", ".", ".."))
    name = _AWKWARD.sub("_", name)
    name = re.sub(r"\.{2,}", ".", re.sub(r"\s+", " ", name)).strip(" .")
    stem, suffix = os.path.splitext(name)
    stem = stem.rstrip(" .")
    while len(stem.encode("utf-8")) > _MAX_NAME_BYTES:
        stem = stem[:-1]
    if not stem:
        raise InvalidRequest(f"the file name {filename!r} leaves no usable document name; "
                             "name the file like 'report-2024.txt'")
    return stem + suffix


def _valid_date(value: str) -> bool:
    if not _DATE.fullmatch(value):
        return False
    parts = [int(x) for x in value.split("-")] + [1, 1]
    try:
        datetime.date(*parts[:3])
    except ValueError:
        return False
    return True


def clean_meta(fields: dict[str, str | None]) -> dict[str, str]:
    """The optional title, date, source and type of an upload, checked; empty ones dropped."""
    meta: dict[str, str] = {}
    for key, value in fields.items():
        if value is None:
            continue
        value = "".join(ch for ch in str(value) if unicodedata.category(ch) != "Cc").strip()
        if not value:
            continue
        if len(value) > _META_LIMITS[key]:
            raise InvalidRequest(f"{key}: at most {_META_LIMITS[key]} characters")
        if key == "date" and not _valid_date(value):
            raise InvalidRequest(f"date: {value!r} is not a date as YYYY-MM-DD (or YYYY-MM, YYYY)")
        meta[key] = value
    return meta


def document_files(corpus_dir: Path, doc_id: str) -> list[Path]:
    """The corpus files of ``doc_id``: its readable file(s) and its sidecar. Found by listing
    the folder, so a hostile doc_id can never name a path outside it."""
    if not corpus_dir.is_dir():
        return []
    return sorted(p for p in corpus_dir.iterdir()
                  if not p.name.startswith(".") and p.is_file()
                  and (p.name == doc_id + META_SUFFIX or (p.stem == doc_id and supported(p.name))))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Stored:
    doc_id: str
    path: str
    sha256: str
    size: int
    replaced: bool


def _clash(corpus_dir: Path, doc_id: str) -> list[Path]:
    return [p for p in document_files(corpus_dir, doc_id) if not p.name.endswith(META_SUFFIX)]


def store_file(corpus_dir: Path, filename: str | None, source: BinaryIO, meta: dict[str, str],
               *, replace: bool = False, max_bytes: int | None = None) -> Stored:
    """Copy ``source`` into the corpus as a document: a temporary file in the folder first
    (hidden, so a build ignores it), then the sidecar, then one rename. A clash with an
    existing doc_id is a Conflict unless ``replace``; a replaced document loses its old file
    and sidecar."""
    name = safe_name(filename)
    if not supported(name):
        raise UnsupportedType(f"no reader for {name!r}: qa reads {supported_types()} files")
    doc_id = Path(name).stem
    if not corpus_dir.is_dir():
        corpus_dir.mkdir(parents=True, exist_ok=True)

    def conflict(existing: list[Path]) -> Conflict:
        return Conflict(f"a document {doc_id!r} already exists ({existing[0].name}); "
                        "replace it with ?replace=true (qa add --replace)")

    if not replace and (existing := _clash(corpus_dir, doc_id)):
        raise conflict(existing)  # before copying: no point storing a file that is refused
    fd, tmp_name = tempfile.mkstemp(dir=corpus_dir, prefix=".upload-", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while block := source.read(_COPY_CHUNK):
                size += len(block)
                if max_bytes is not None and size > max_bytes:
                    raise PayloadTooLarge(f"upload over the limit of {max_bytes} bytes "
                                          "(QA_MAX_UPLOAD_BYTES)")
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        with _corpus_lock:
            existing = _clash(corpus_dir, doc_id)
            if existing and not replace:
                raise conflict(existing)
            sidecar = corpus_dir / (doc_id + META_SUFFIX)
            # The sidecar lands before the document, so a build never reads the new file with
            # the old metadata; a replacement without metadata must not inherit the old one.
            if meta:
                _atomic_write(sidecar, json.dumps(meta, ensure_ascii=False, indent=1).encode())
            elif existing:
                sidecar.unlink(missing_ok=True)
            for old in existing:
                if old.name != name:
                    old.unlink(missing_ok=True)
            os.replace(tmp, corpus_dir / name)
            fsync_dir(corpus_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Stored(doc_id, name, digest.hexdigest(), size, bool(existing))


def remove_files(corpus_dir: Path, doc_id: str) -> list[str]:
    """Delete a document's file(s) and sidecar from the corpus; the names removed."""
    with _corpus_lock:
        files = document_files(corpus_dir, doc_id)
        for path in files:
            path.unlink(missing_ok=True)
        if files:
            fsync_dir(corpus_dir)
    return [p.name for p in files]
