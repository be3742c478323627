"""Reading the corpus folder: every supported file is a document, read by the reader for its
format (:mod:`qa.ingest.readers`), with optional metadata in a sidecar ``<name>.meta.json``
(title, date, source, type, language).

Adding a document needs no code change: drop the file in, run ``qa index``. A file that
cannot be read is skipped and reported with the reason; it never stops the others.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.errors import CorpusError
from qa.ingest.readers import EXTENSIONS, Extracted, Limits, ReadError, read_file
from qa.types import Document

SUFFIXES = tuple(EXTENSIONS)
SIDECAR = ".meta.json"
_META_KEYS = {"title", "date", "source", "type", "language"}
_DATE_IN_NAME = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATE_IN_TEXT = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_ISO_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")

# The text a previous build read from a file with these bytes (sha256), if any: an unchanged
# scanned PDF is not OCRed again.
Cache = Callable[[str], Extracted | None]


@dataclass
class CorpusLoad:
    """The documents read, what their readers returned (doc_id -> record; the index keeps it
    so an unchanged file is not read again), the files skipped (file name -> reason), and
    what the readers warned about (file name -> warnings)."""

    documents: list[Document] = field(default_factory=list)
    extracted: dict[str, Extracted] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)


def _guess_title(text: str, stem: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("\ufeff").lstrip("#").strip()
        if line:
            return line[:80]
    return stem


def _guess_date(text: str, stem: str) -> str | None:
    m = _DATE_IN_NAME.search(stem)
    if m:
        return "-".join(m.groups())
    m = _DATE_IN_TEXT.search(text)
    if m:
        y, mo, d = m.groups()
        return f"{y}-{int(mo):02d}-{int(d):02d}"
    return None


def _meta_date(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = value.strip()
        if _ISO_DATE.match(value):
            return value
        m = _DATE_IN_TEXT.fullmatch(value)
        if m:
            y, mo, d = m.groups()
            return f"{y}-{int(mo):02d}-{int(d):02d}"
    raise ReadError(f"{where}: date must be a string like \"2021-07-26\", not {value!r}")


def read_sidecar(path: Path) -> dict[str, Any]:
    """The validated metadata of ``path`` (empty without a sidecar)."""
    meta_path = path.with_name(path.stem + SIDECAR)
    if not meta_path.exists():
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReadError(f"{meta_path.name}: invalid JSON metadata ({exc})") from exc
    if not isinstance(meta, dict):
        raise ReadError(f"{meta_path.name}: metadata must be a JSON object")
    for key in ("title", "source", "type", "language"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise ReadError(f"{meta_path.name}: {key} must be a string, not {meta[key]!r}")
    meta["date"] = _meta_date(meta.get("date"), meta_path.name)
    return meta


def make_document(path: Path, raw: bytes, extracted: Extracted,
                  meta: dict[str, Any]) -> Document:
    """The document of one read file: the sidecar's metadata wins over what the file says
    about itself, which wins over what is guessed from its name and text."""
    text = extracted.text
    extra = {k: str(v) for k, v in meta.items() if k not in _META_KEYS}
    date = (meta.get("date") or (_guess_date("", path.stem)) or extracted.date
            or _guess_date(text, path.stem))
    return Document(
        doc_id=path.stem,
        path=path.name,
        title=str(meta.get("title") or extracted.title or _guess_title(text, path.stem)),
        text=text,
        sha256=hashlib.sha256(raw).hexdigest(),
        date=date,
        source=meta.get("source"),
        doc_type=meta.get("type"),
        language=str(meta.get("language") or "zh"),
        extra=extra,
        media_type=extracted.media_type,
        pages=extracted.pages,
        markdown=extracted.markdown,
        rejoin_lines=extracted.rejoin_lines,
        warnings=extracted.warnings,
    )


def _check_path(path: Path, root: Path, limits: Limits) -> None:
    """Refuse what must not be read: links out of the folder, non-files, unknown types and
    files over the size limit."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ReadError(f"{path.name}: a broken link or unreadable path ({exc})") from exc
    if not real.is_relative_to(root):
        raise ReadError(f"{path.name}: resolves outside the corpus folder (a link?); refused")
    if real.is_dir():
        raise ReadError(f"{path.name}: a folder; qa reads only the files directly in the "
                        "corpus folder")
    if not real.is_file():
        raise ReadError(f"{path.name}: not a regular file")
    if path.suffix.lower() not in EXTENSIONS:
        raise ReadError(f"{path.name}: unsupported file type "
                        f"{path.suffix.lower() or '(no extension)'}; qa reads "
                        + " ".join(sorted(EXTENSIONS)))
    size = real.stat().st_size
    if size == 0:
        raise ReadError(f"{path.name}: the file is empty")
    if size > limits.max_bytes:
        raise ReadError(f"{path.name}: {size / 2**20:.1f} MB, over the limit of "
                        f"{limits.max_bytes / 2**20:.0f} MB per file")


def _load(path: Path, root: Path, limits: Limits | None,
          cache: Cache | None) -> tuple[Document, Extracted]:
    limits = limits or Limits()
    _check_path(path, root, limits)
    raw = path.read_bytes()
    meta = read_sidecar(path)
    extracted = cache(hashlib.sha256(raw).hexdigest()) if cache else None
    if extracted is None:
        extracted = read_file(path, raw, limits)
    return make_document(path, raw, extracted, meta), extracted


def load_document(path: Path, *, root: Path | None = None, limits: Limits | None = None,
                  cache: Cache | None = None) -> Document:
    """Read one corpus file into a document, or raise ReadError saying why it cannot be."""
    return _load(path, (root or path.parent).resolve(), limits, cache)[0]


def corpus_files(corpus_dir: Path) -> list[Path]:
    """Every entry of the folder that could be a document: sidecars and hidden files are not."""
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist")
    return sorted(p for p in corpus_dir.iterdir()
                  if not p.name.startswith(".") and not p.name.endswith(SIDECAR))


def load_corpus(corpus_dir: Path, *, limits: Limits | None = None,
                cache: Cache | None = None) -> CorpusLoad:
    """Every readable document of the folder, and every file skipped with its reason."""
    out = CorpusLoad()
    seen: dict[str, str] = {}
    root = corpus_dir.resolve()
    for path in corpus_files(corpus_dir):
        if path.stem in seen:  # checked first: no need to read a file that cannot be indexed
            out.failed[path.name] = (f"{path.name}: {seen[path.stem]} already has the id "
                                     f"{path.stem!r}; rename one of them")
            continue
        try:
            doc, extracted = _load(path, root, limits, cache)
        except CorpusError as exc:
            out.failed[path.name] = exc.message
            continue
        except Exception as exc:  # a reader's library failing on one file must not stop the rest
            out.failed[path.name] = f"{path.name}: could not be read ({type(exc).__name__}: {exc})"
            continue
        seen[doc.doc_id] = path.name
        out.documents.append(doc)
        out.extracted[doc.doc_id] = extracted
        if doc.warnings:
            out.warnings[path.name] = list(doc.warnings)
    return out
