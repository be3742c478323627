"""The chunk store in Milvus: what a replica needs to cite, with no file on its disk.

Two collections per generation, filled from the generation's ``chunks.sqlite`` when a build
publishes it (``publish_store``), read by :class:`MilvusChunkStore`, which answers what
``qa.index.store.ChunkStore`` answers (the ``ChunkSource`` interface):

* ``<prefix>_chunks_<gen>``: ``row`` (INT64, the vector and BM25 row id), ``doc`` (the
  document's ordinal) and ``data``, the chunk's fields as JSON (chunk id, doc id, paragraph,
  window, offsets, text, clean text, section, speaker, role, context, page);
* ``<prefix>_docs_<gen>``: ``ord`` (INT64, the documents in doc_id order), ``doc_id`` and
  ``data``, the document record as JSON with the range of its rows (a document's rows are
  contiguous), so ``rows_of`` and ``chunks_of`` are range queries.

A document's text (what citations index into) goes to the generation's blob collection
(``qa.index.milvus_records.Blobs``) as ``text/<ord>``; so does a record too long for one
``VARCHAR`` (``chunk/<row>``, ``doc/<ord>``: none in the shipped corpus). What the readers
made of each file (the build's cache of unchanged files) stays in the local generation: a
build that has no previous generation on its disk reads every file again.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from qa.errors import IndexNotReady, QAError
from qa.index.milvus_records import PAGE, VARCHAR_MAX, Blobs, create, fits, insert, quote
from qa.lru import LRU
from qa.types import Chunk, Document

log = logging.getLogger("qa.index")
T = TypeVar("T")
_SPILLED = "@blob"
_CHUNK_KEYS = ("chunk_id", "doc_id", "paragraph", "window", "char_start", "char_end", "text",
               "clean_text", "section", "speaker", "speaker_role", "context", "page")
_DOC_KEYS = ("doc_id", "path", "title", "date", "source", "doc_type", "language", "sha256",
             "extra", "media_type", "pages", "warnings")


def collections(prefix: str, gen: str) -> dict[str, str]:
    from qa.index.vectors.milvus import collection_name

    return {kind: collection_name(f"{prefix}_{kind}", gen) for kind in ("chunks", "docs", "blobs")}


def publish_store(client: Any, store_file: Path, names: dict[str, str], blobs: Blobs) -> None:
    """Copy a written ``chunks.sqlite`` into the generation's collections."""
    create(client, names["chunks"], [("row", "INT64", {}), ("doc", "INT64", {}),
                                     ("data", "VARCHAR", {"max_length": VARCHAR_MAX})])
    create(client, names["docs"], [("ord", "INT64", {}),
                                   ("doc_id", "VARCHAR", {"max_length": 4096}),
                                   ("data", "VARCHAR", {"max_length": VARCHAR_MAX})])
    conn = sqlite3.connect(f"file:{store_file}?mode=ro", uri=True)
    try:
        docs = conn.execute("SELECT d.doc_id, d.path, d.title, d.date, d.source, d.doc_type, "
                            "d.language, d.sha256, d.extra, d.media_type, d.pages, d.warnings, "
                            "MIN(c.row), MAX(c.row) FROM documents d LEFT JOIN chunks c "
                            "ON c.doc_id = d.doc_id GROUP BY d.doc_id ORDER BY d.doc_id"
                            ).fetchall()
        ords = {r[0]: i for i, r in enumerate(docs)}
        spilled: list[tuple[str, str]] = []

        def record(name: str, data: str) -> str:
            if fits(data):
                return data
            spilled.append((name, data))
            return _SPILLED

        rows = []
        for i, r in enumerate(docs):
            rec = dict(zip(_DOC_KEYS, r[:12], strict=True))
            for key in ("extra", "pages", "warnings"):
                rec[key] = json.loads(rec[key])
            rec["rows"] = [r[12], r[13] + 1] if r[12] is not None else [0, 0]
            rows.append({"ord": i, "doc_id": r[0],
                         "data": record(f"doc/{i}", json.dumps(rec, ensure_ascii=False))})
        insert(client, names["docs"], rows)
        cur = conn.execute(f"SELECT row, {', '.join(_CHUNK_KEYS)} FROM chunks ORDER BY row")
        insert(client, names["chunks"], (
            {"row": r[0], "doc": ords[r[2]], "data": record(f"chunk/{r[0]}", json.dumps(
                {**dict(zip(_CHUNK_KEYS, r[1:], strict=True)), "section": json.loads(r[9])},
                ensure_ascii=False))} for r in cur))
        blobs.put(spilled)
        blobs.put((f"text/{ords[d]}", text) for d, text in
                  conn.execute("SELECT doc_id, text FROM sources"))
    finally:
        conn.close()
    for name in names.values():
        client.flush(name)


def _chunk(rec: dict[str, Any]) -> Chunk:
    return Chunk(**{**rec, "section": tuple(rec["section"])})


def _document(rec: dict[str, Any]) -> Document:
    fields = {k: rec[k] for k in _DOC_KEYS}
    return Document(**{**fields, "text": "", "language": fields["language"] or "zh",
                       "pages": tuple(fields["pages"]), "warnings": tuple(fields["warnings"])})


class _Documents(Mapping[str, Document]):
    """The documents collection as a read-only mapping, recent lookups kept (a generation
    never changes, so they cannot go stale)."""

    CACHED = 4096

    def __init__(self, store: MilvusChunkStore, count: int) -> None:
        self._store, self._len = store, count
        self._recent: LRU[str, tuple[int, Document, tuple[int, int]]] = LRU(self.CACHED)

    def entries(self, doc_ids: Sequence[str]) -> dict[str, tuple[int, Document, tuple[int, int]]]:
        """ord, Document and row range of each known doc_id among ``doc_ids``."""
        out, todo = self._recent.get_many(doc_ids)
        if todo:
            found = self._store.records("docs", f"doc_id in [{','.join(map(quote, todo))}]",
                                        ["ord", "doc_id"], lambda r: int(r["ord"]), "doc")
            fetched = {rec["doc_id"]: (ord_, _document(rec),
                                       (int(rec["rows"][0]), int(rec["rows"][1])))
                       for ord_, rec in found.items()}
            self._recent.put(fetched)
            out.update(fetched)
        return out

    def __getitem__(self, doc_id: str) -> Document:
        entry = self.entries([doc_id]).get(doc_id) if isinstance(doc_id, str) else None
        if entry is None:
            raise KeyError(doc_id)
        return entry[1]

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and doc_id in self.entries([doc_id])

    def __iter__(self) -> Iterator[str]:
        ids: list[str] = []
        store = self._store
        for lo in range(0, self._len, PAGE):
            got = store.call(functools.partial(
                store.client.query, store.names["docs"],
                filter=f"ord >= {lo} and ord < {lo + PAGE}", output_fields=["ord", "doc_id"]))
            ids.extend(r["doc_id"] for r in sorted(got, key=lambda r: int(r["ord"])))
        return iter(ids)

    def __len__(self) -> int:
        return self._len


class MilvusChunkStore:
    """Read side of one generation's chunk store in Milvus; safe across threads (pymilvus
    clients are). A Milvus error is an IndexNotReady (503) with the details in the log."""

    def __init__(self, client: Any, names: dict[str, str], blobs: Blobs, *, chunks: int,
                 documents: int) -> None:
        self.client, self.names, self.blobs = client, names, blobs
        self._count = chunks
        self._closed = False
        self._docs = _Documents(self, documents)

    def call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except QAError:
            raise
        except Exception as exc:
            if self._closed:
                raise IndexNotReady("the index generation was replaced during the request; "
                                    "retry") from None
            log.warning("Milvus chunk store %s: %s: %s", self.names["chunks"],
                        type(exc).__name__, exc)
            raise IndexNotReady(f"the chunk store in Milvus ({self.names['chunks']}) cannot be "
                                "read now; retry (the server log has the details)") from None

    def records(self, kind: str, expr: str, fields: list[str], key: Callable[[Any], int],
                spill: str) -> dict[int, dict[str, Any]]:
        """``key(row) -> data`` decoded for the rows of ``kind`` matching ``expr``, spilled
        records read from the blobs."""
        got = self.call(lambda: self.client.query(self.names[kind], filter=expr,
                                                  output_fields=[*fields, "data"]))
        out = {key(r): r["data"] for r in got}
        long = {f"{spill}/{k}": k for k, v in out.items() if v == _SPILLED}
        if long:
            for name, text in self.call(lambda: self.blobs.get_many(list(long))).items():
                out[long[name]] = text
        return {k: json.loads(v) for k, v in out.items()}

    @property
    def documents(self) -> Mapping[str, Document]:
        return self._docs

    def count(self) -> int:
        return self._count

    def stored_count(self) -> int:
        """The rows the chunks collection holds (checked against the manifest at load)."""
        got = self.call(lambda: self.client.query(self.names["chunks"], filter="",
                                                  output_fields=["count(*)"]))
        return int(got[0]["count(*)"])

    def get(self, rows: Sequence[int]) -> dict[int, Chunk]:
        if not rows:
            return {}
        expr = f"row in [{','.join(str(int(r)) for r in rows)}]"
        found = self.records("chunks", expr, ["row"], lambda r: int(r["row"]), "chunk")
        return {r: _chunk(rec) for r, rec in found.items()}

    def rows_of(self, doc_ids: Iterable[str]) -> list[int]:
        entries = self._docs.entries(list(doc_ids))
        return [r for _, _, (lo, hi) in entries.values() for r in range(lo, hi)]

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        entry = self._docs.entries([doc_id]).get(doc_id)
        if entry is None:
            return []
        lo, hi = entry[2]
        chunks: list[Chunk] = []
        for a in range(lo, hi, PAGE):
            found = self.records("chunks", f"row >= {a} and row < {min(hi, a + PAGE)}",
                                 ["row"], lambda r: int(r["row"]), "chunk")
            chunks.extend(_chunk(found[r]) for r in sorted(found))
        return sorted(chunks, key=lambda c: (c.paragraph, c.window))

    def text_of(self, doc_id: str) -> str | None:
        entry = self._docs.entries([doc_id]).get(doc_id)
        if entry is None:
            return None
        return self.call(lambda: self.blobs.get(f"text/{entry[0]}"))

    def close(self) -> None:
        """Close the Milvus client (callers make sure no thread still reads)."""
        self._closed = True
        self.client.close()
