"""The chunk store: SQLite, one row per indexed chunk, keyed by its vector row id.

Reads fetch only the rows a search returns, so a million passages cost no start-up time
and no Python objects until they are asked for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from qa.errors import IndexCorrupt, IndexNotReady, InvalidRequest
from qa.ingest.readers.base import Extracted
from qa.types import Chunk, Document

log = logging.getLogger("qa.index")

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
        found = self._store._run(
            f"SELECT {_DOC_COLS} FROM documents WHERE doc_id = ?", (doc_id,), _document)
        if not found:
            raise KeyError(doc_id)
        doc = found[0]
        with self._lock:
            self._recent[doc_id] = doc
            if len(self._recent) > self.CACHED:
                self._recent.popitem(last=False)
        return doc

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and bool(self._store._run(
            "SELECT 1 FROM documents WHERE doc_id = ?", (doc_id,)))

    def __iter__(self) -> Iterator[str]:
        cur = self._store._run("SELECT doc_id FROM documents ORDER BY doc_id")
        return iter([r[0] for r in cur])

    def __len__(self) -> int:
        if self._len is None:
            self._len = int(self._store._run(
                "SELECT COUNT(*) FROM documents")[0][0])
        return self._len


class ChunkStore:
    """Read side. One connection per thread: SQLite connections are not shared across threads.

    Every connection is remembered, so ``close`` closes them all, whichever thread opened
    them. A damaged file's SQLite error becomes an IndexCorrupt naming chunks.sqlite.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self._run("SELECT 1 FROM documents LIMIT 1")  # fail here, not mid-search
        self._docs = _Documents(self)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            with self._all_lock:
                if self._closed:
                    conn.close()
                    raise sqlite3.ProgrammingError("the store is closed")
                self._all.append(conn)
            self._local.conn = conn
        return conn

    def _run(self, sql: str, params: Sequence[object] = (),
             decode: Callable[[Any], Any] | None = None) -> list[Any]:
        """``execute`` and fetch (through ``decode``) with failures translated: a malformed
        or vanished file, or rows that do not decode, are an IndexCorrupt (details in the
        log), a closed store an IndexNotReady, text that is not UTF-8 an InvalidRequest."""
        try:
            rows = self._conn().execute(sql, params).fetchall()
            return [decode(r) for r in rows] if decode else rows
        except UnicodeEncodeError:
            raise InvalidRequest("text must be valid UTF-8 (it contains a lone surrogate)") \
                from None
        except (sqlite3.Error, ValueError, TypeError, IndexError) as exc:
            if self._closed:
                raise IndexNotReady("the index generation was replaced during the request; "
                                    "retry") from None
            log.warning("cannot read %s: %s: %s", self.path, type(exc).__name__, exc)
            raise IndexCorrupt(f"the index file {self.path.name} of generation "
                               f"{self.path.parent.name} is damaged (it cannot be read); run "
                               "`qa index` to rebuild it", file=self.path.name) from None

    @property
    def documents(self) -> Mapping[str, Document]:
        """doc_id -> Document (with empty ``text``), read from SQLite on each lookup."""
        return self._docs

    def count(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM chunks")[0][0])

    def get(self, rows: Sequence[int]) -> dict[int, Chunk]:
        if not rows:
            return {}
        marks = ",".join("?" * len(rows))
        found = self._run(f"SELECT {_CHUNK_COLS} FROM chunks WHERE row IN ({marks})",
                          [int(r) for r in rows], lambda r: (r[0], _chunk(r)))
        return dict(found)

    def rows_of(self, doc_ids: Iterable[str]) -> list[int]:
        ids = list(doc_ids)
        marks = ",".join("?" * len(ids))
        cur = self._run(f"SELECT row FROM chunks WHERE doc_id IN ({marks})", ids)
        return [r[0] for r in cur]

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return self._run(
            f"SELECT {_CHUNK_COLS} FROM chunks WHERE doc_id = ? ORDER BY paragraph, window",
            (doc_id,), _chunk)

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
        return iter(self._run(
            f"SELECT {_CHUNK_COLS}, tokens FROM chunks WHERE doc_id = ? ORDER BY row", (doc_id,),
            lambda r: (r[0], _chunk(r), r[14].split(" ") if r[14] else [])))

    def close(self) -> None:
        """Close every thread's connection (callers make sure no thread still reads)."""
        with self._all_lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


class StoreWriter:
    """A new store file written as a build goes: documents and their sources first, then
    chunks in row order, all in one transaction that ``close`` commits (the caller places the
    file atomically). A streamed build hands over each document's chunks as it cuts them, so
    it never holds the whole corpus's rows."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path)
        try:
            self._conn.executescript(_SCHEMA)
        except BaseException:
            self._conn.close()
            raise

    def add_documents(self, documents: Iterable[Document],
                      sources: Mapping[str, Extracted] | None = None) -> None:
        """``sources``: doc_id -> what its reader returned; a document without one keeps its
        own text, for citations."""
        documents = list(documents)
        sources = sources or {}
        self._conn.executemany(
            "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ((d.doc_id, d.path, d.title, d.date, d.source, d.doc_type, d.language, d.sha256,
              json.dumps(d.extra, ensure_ascii=False), len(d.text), d.media_type,
              json.dumps(list(d.pages)), json.dumps(list(d.warnings), ensure_ascii=False))
             for d in documents))
        self._conn.executemany(
            "INSERT INTO sources VALUES (?,?,?,?)",
            ((d.doc_id, d.sha256, _reader_record(sources.get(d.doc_id) or _as_extracted(d)),
              d.text) for d in documents))

    def add_chunks(self, chunks: Iterable[tuple[int, Chunk, Sequence[str]]]) -> None:
        # A generator, not a list: at a million chunks the list of row tuples alone was ~2 GB.
        self._conn.executemany(
            "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ((row, c.chunk_id, c.doc_id, c.paragraph, c.window, c.char_start, c.char_end,
              c.text, c.clean_text, json.dumps(list(c.section), ensure_ascii=False), c.speaker,
              c.speaker_role, c.context, " ".join(toks), c.page) for row, c, toks in chunks))

    def close(self, commit: bool = True) -> None:
        try:
            if commit:
                self._conn.commit()
        finally:
            self._conn.close()


def write_store(path: Path, documents: Iterable[Document],
                chunks: Iterable[tuple[int, Chunk, Sequence[str]]],
                sources: Mapping[str, Extracted] | None = None) -> None:
    """Write a new store file at once (the caller places it atomically); see StoreWriter."""
    writer = StoreWriter(path)
    try:
        writer.add_documents(documents, sources)
        writer.add_chunks(chunks)
    except BaseException:
        writer.close(commit=False)
        raise
    writer.close()
