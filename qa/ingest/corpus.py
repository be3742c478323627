"""Reading the corpus folder: every ``.txt`` / ``.md`` file is a document, with optional
metadata in a sidecar ``<name>.meta.json`` (title, date, source, type, language).

Adding a document needs no code change: drop the file in, run ``qa index``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from qa.errors import CorpusError
from qa.types import Document

SUFFIXES = (".txt", ".md", ".markdown")
_META_KEYS = {"title", "date", "source", "type", "language"}
_DATE_IN_NAME = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATE_IN_TEXT = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")


def _guess_title(text: str, stem: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
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


def load_document(path: Path) -> Document:
    """Read one file as UTF-8, byte for byte (offsets index into exactly this text)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path.name}: not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                          "convert it with `iconv -f GB18030 -t UTF-8`") from exc
    if not text.strip():
        raise CorpusError(f"{path.name}: the file is empty")
    meta: dict = {}
    meta_path = path.with_name(path.stem + ".meta.json")
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorpusError(f"{meta_path.name}: invalid JSON metadata ({exc})") from exc
        if not isinstance(meta, dict):
            raise CorpusError(f"{meta_path.name}: metadata must be a JSON object")
    extra = {k: str(v) for k, v in meta.items() if k not in _META_KEYS}
    return Document(
        doc_id=path.stem,
        path=path.name,
        title=str(meta.get("title") or _guess_title(text, path.stem)),
        text=text,
        sha256=hashlib.sha256(raw).hexdigest(),
        date=meta.get("date") or _guess_date(text, path.stem),
        source=meta.get("source"),
        doc_type=meta.get("type"),
        language=str(meta.get("language") or "zh"),
        extra=extra,
    )


def corpus_files(corpus_dir: Path) -> list[Path]:
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist")
    return sorted(p for p in corpus_dir.iterdir()
                  if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))


def load_corpus(corpus_dir: Path) -> tuple[list[Document], dict[str, str]]:
    """The documents that could be read, and the files that could not (file name -> reason):
    one bad file is reported and skipped, never stops the others."""
    docs: list[Document] = []
    failed: dict[str, str] = {}
    seen: dict[str, str] = {}
    for path in corpus_files(corpus_dir):
        try:
            doc = load_document(path)
        except CorpusError as exc:
            failed[path.name] = exc.message
            continue
        if doc.doc_id in seen:
            failed[path.name] = (f"{path.name} and {seen[doc.doc_id]} would share the id "
                                 f"{doc.doc_id!r}")
            continue
        seen[doc.doc_id] = path.name
        docs.append(doc)
    return docs, failed
