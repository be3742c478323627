"""The chunk store: SQLite, one row per indexed chunk, keyed by its vector row id.

Reads fetch only the rows a search returns, so a million passages cost no start-up time
and no Python objects until they are asked for.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from qa.ingest.readers.base import Extracted
from qa.types import Chunk, Document

# ``sources`` keeps each document's text as read (what citations index into, served by
# GET /documents/{doc_id}/text) and what its reader said about it, keyed by the file's
# sha256, so that the next build need not read (or OCR) an unchanged file again.
_SCHEMA = """
CREATE TABLE documents (
    doc_id TEXT PRIMARY KEY, path TEXT NOT NULL, title TEXT NOT NULL, date TEXT,
    source TEXT, doc_type TEXT, language TEXT, sha256 TEXT NOT NULL, extra TEXT NOT NULL,
    n_chars INTEGER NOT NULL, media_type TEXT NOT NULL, pages TEXT NOT NULL,
    warnings TEXT NOT NULL
);
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL,
    paragraph INTEGER NOT NULL, window INTEGER NOT NULL, char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL, text TEXT NOT NULL, clean_text TEXT NOT NULL,
    section TEXT NOT NULL, speaker TEXT, speaker_role TEXT, context TEXT, tokens TEXT NOT NULL,
    page INTEGER
);
CREATE INDEX chunks_doc ON chunks(doc_id, paragraph, window);
CREATE TABLE sources (
    doc_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, reader TEXT NOT NULL, text TEXT NOT NULL
);
CREATE INDEX sources_sha ON sources(sha256);
"""

_CHUNK_COLS = ("row, chunk_id, doc_id, paragraph, window, char_start, char_end, text, "
               "clean_text, section, speaker, speaker_role, context, page")
_DOC_COLS = ("doc_id, path, title, date, source, doc_type, language, sha256, extra, media_type, "
             "pages, warnings")


def _chunk(row: sqlite3.Row | tuple) -> Chunk:
    return Chunk(chunk_id=row[1], doc_id=row[2], paragraph=row[3], window=row[4],
                 char_start=row[5], char_end=row[6], text=row[7], clean_text=row[8],
                 section=tuple(json.loads(row[9])), speaker=row[10], speaker_role=row[11],
                 context=row[12], page=row[13])


def _document(r: sqlite3.Row | tuple) -> Document:
    return Document(doc_id=r[0], path=r[1], title=r[2], text="", sha256=r[7], date=r[3],
                    source=r[4], doc_type=r[5], language=r[6] or "zh", extra=json.loads(r[8]),
                    media_type=r[9], pages=tuple(json.loads(r[10])),
                    warnings=tuple(json.loads(r[11])))


def _reader_record(extracted: Extracted) -> str:
    record = dataclasses.asdict(extracted)
    del record["text"]
    return json.dumps(record, ensure_ascii=False)


def _as_extracted(d: Document) -> Extracted:
    return Extracted(text=d.text, media_type=d.media_type, reader="unknown",
                     markdown=d.markdown, rejoin_lines=d.rejoin_lines, pages=d.pages,
                     warnings=d.warnings)


def _extracted(record: str, text: str) -> Extracted:
    fields = json.loads(record)
    return Extracted(text=text, **{**fields, "pages": tuple(fields["pages"]),
                                   "warnings": tuple(fields["warnings"])})


class _Documents(Mapping[str, Document]):
    """The documents table as a read-only mapping, read on demand: loading it whole into a
    dict took 9.7 s and 1 GB at start-up for a million documents (docs/SCALING.md)."""

    # Every search hit names its document: the recent ones are kept (a generation's store is
    # read-only, so they cannot go stale), bounded so a million documents stay on disk.
    CACHED = 4096

    def __init__(self, store: ChunkStore) -> None:
        self._store = store
        self._len: int | None = None
        self._recent: OrderedDict[str, Document] = OrderedDict()
        self._lock = threading.Lock()

    def __getitem__(self, doc_id: str) -> Document:
        with self._lock:
            doc = self._recent.get(doc_id)
            if doc is not None:
                self._recent.move_to_end(doc_id)
                return doc
        row = self._store._conn().execute(
            f"SELECT {_DOC_COLS} FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        if row is None:
            raise KeyError(doc_id)
        doc = _document(row)
        with self._lock:
            self._recent[doc_id] = doc
            if len(self._recent) > self.CACHED:
                self._recent.popitem(last=False)
        return doc

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self._store._conn().execute(
            "SELECT 1 FROM documents WHERE doc_id = ?", (doc_id,)).fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        cur = self._store._conn().execute("SELECT doc_id FROM documents ORDER BY doc_id")
        return iter([r[0] for r in cur])

    def __len__(self) -> int:
        if self._len is None:
            self._len = int(self._store._conn().execute(
                "SELECT COUNT(*) FROM documents").fetchone()[0])
        return self._len


class ChunkStore:
    """Read side. One connection per thread: SQLite connections are not shared across threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._conn().execute("SELECT 1 FROM documents LIMIT 1")  # fail here, not mid-search
        self._docs = _Documents(self)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    @property
    def documents(self) -> Mapping[str, Document]:
        """doc_id -> Document (with empty ``text``), read from SQLite on each lookup."""
        return self._docs

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def get(self, rows: Sequence[int]) -> dict[int, Chunk]:
        if not rows:
            return {}
        marks = ",".join("?" * len(rows))
        cur = self._conn().execute(
            f"SELECT {_CHUNK_COLS} FROM chunks WHERE row IN ({marks})", [int(r) for r in rows])
        return {r[0]: _chunk(r) for r in cur}

    def rows_of(self, doc_ids: Iterable[str]) -> list[int]:
        ids = list(doc_ids)
        marks = ",".join("?" * len(ids))
        cur = self._conn().execute(f"SELECT row FROM chunks WHERE doc_id IN ({marks})", ids)
        return [r[0] for r in cur]

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        cur = self._conn().execute(
            f"SELECT {_CHUNK_COLS} FROM chunks WHERE doc_id = ? ORDER BY paragraph, window",
            (doc_id,))
        return [_chunk(r) for r in cur]

    def text_of(self, doc_id: str) -> str | None:
        """The text the document was read as: every chunk's offsets index into it."""
        row = self._conn().execute("SELECT text FROM sources WHERE doc_id = ?",
                                   (doc_id,)).fetchone()
        return row[0] if row else None

    def extracted(self, sha256: str) -> Extracted | None:
        """What the readers made of a file with these bytes when this store was built."""
        try:
            row = self._conn().execute("SELECT reader, text FROM sources WHERE sha256 = ? "
                                       "LIMIT 1", (sha256,)).fetchone()
        except sqlite3.OperationalError:  # a store written before sources were kept
            return None
        return _extracted(row[0], row[1]) if row else None

    def iter_doc(self, doc_id: str) -> Iterator[tuple[int, Chunk, list[str]]]:
        """Rows, chunks and stored lexical tokens of one document, for incremental rebuilds."""
        cur = self._conn().execute(
            f"SELECT {_CHUNK_COLS}, tokens FROM chunks WHERE doc_id = ? ORDER BY row", (doc_id,))
        for r in cur:
            yield r[0], _chunk(r), r[14].split(" ") if r[14] else []

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def write_store(path: Path, documents: Iterable[Document],
                chunks: Iterable[tuple[int, Chunk, Sequence[str]]],
                sources: Mapping[str, Extracted] | None = None) -> None:
    """Write a new store file (the caller places it atomically). ``sources``: doc_id -> what
    its reader returned; a document without one keeps its own text, for citations."""
    documents = list(documents)
    sources = sources or {}
    conn = sqlite3.connect(path)
    try:
        conn.executescript(_SCHEMA)
        conn.executemany(
            "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ((d.doc_id, d.path, d.title, d.date, d.source, d.doc_type, d.language, d.sha256,
              json.dumps(d.extra, ensure_ascii=False), len(d.text), d.media_type,
              json.dumps(list(d.pages)), json.dumps(list(d.warnings), ensure_ascii=False))
             for d in documents))
        conn.executemany(
            "INSERT INTO sources VALUES (?,?,?,?)",
            ((d.doc_id, d.sha256, _reader_record(sources.get(d.doc_id) or _as_extracted(d)),
              d.text) for d in documents))
        # A generator, not a list: at a million chunks the list of row tuples alone was ~2 GB.
        conn.executemany(
            "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ((row, c.chunk_id, c.doc_id, c.paragraph, c.window, c.char_start, c.char_end,
              c.text, c.clean_text, json.dumps(list(c.section), ensure_ascii=False), c.speaker,
              c.speaker_role, c.context, " ".join(toks), c.page) for row, c, toks in chunks))
        conn.commit()
    finally:
        conn.close()
