"""Plain records in Milvus: what a generation keeps there besides its vectors, and the
registry of generations that tells a replica which one is live.

Milvus stores rows with typed fields and requires a vector field in every collection, so
each collection here carries a 2-d placeholder (``pad``) with a FLAT index. Text longer than
one ``VARCHAR`` (65,535 bytes) is cut into numbered parts of ``PART_CHARS`` characters (at
most 4 UTF-8 bytes each) and joined again on reading: a document's text, the manifest,
and the small arrays a search reads whole (hubness, sentence offsets, question flags) saved
with numpy and base64-encoded.

The registry (one collection per ``QA_MILVUS_COLLECTION`` prefix, ``<prefix>_generations``)
holds the row ``CURRENT`` (the live generation's name: what ``index/CURRENT`` is for a
folder) and one row ``gen:<name>`` per generation with when it was registered, made
current and retired; ``qa.index.milvus_generation`` retires old generations by it.
pymilvus itself is imported through ``qa.index.vectors.milvus``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from qa.errors import IndexNotReady
from qa.index.vectors.milvus import _pymilvus

log = logging.getLogger("qa.index")

PAD = "pad"
VARCHAR_MAX = 65_535
PART_CHARS = 16_000
BATCH = 1_000
PAGE = 10_000  # rows per query: under a Milvus server's 16,384 result window
CURRENT = "CURRENT"


def quote(text: str) -> str:
    """A string literal for a Milvus filter expression."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def connect(uri: str, token: str | None) -> Any:
    try:
        return _pymilvus().MilvusClient(uri=uri, token=token or "")
    except Exception as exc:
        raise IndexNotReady(f"cannot open Milvus at {uri}: {exc}") from exc


def create(client: Any, name: str, fields: list[tuple[str, str, dict[str, Any]]]) -> None:
    """A fresh collection (an old one of that name dropped) of ``fields`` (name, DataType
    name, keyword arguments; the first is the primary key) plus the placeholder vector."""
    pm = _pymilvus()
    if client.has_collection(name):
        client.drop_collection(name)
    schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    for i, (field, kind, kwargs) in enumerate(fields):
        schema.add_field(field, getattr(pm.DataType, kind), is_primary=i == 0, **kwargs)
    schema.add_field(PAD, pm.DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index(field_name=PAD, index_type="FLAT", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=index,
                             consistency_level="Strong")


def insert(client: Any, name: str, rows: Iterable[dict[str, Any]]) -> int:
    """Insert in batches, each row given the placeholder; returns the count."""
    batch: list[dict[str, Any]] = []
    n = 0
    for row in rows:
        batch.append({**row, PAD: [0.0, 0.0]})
        if len(batch) == BATCH:
            client.insert(name, batch)
            n, batch = n + len(batch), []
    if batch:
        client.insert(name, batch)
        n += len(batch)
    return n


def fits(text: str) -> bool:
    return len(text) <= PART_CHARS or len(text.encode("utf-8")) <= VARCHAR_MAX


def parts(text: str) -> list[str]:
    return [text[i:i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]


# -- blobs: one collection per generation, (name, part) -> text -------------------------------
BLOB_FIELDS = [("id", "INT64", {}), ("name", "VARCHAR", {"max_length": 1024}),
               ("part", "INT64", {}), ("data", "VARCHAR", {"max_length": VARCHAR_MAX})]


class Blobs:
    """Named texts in one collection, each cut into parts."""

    def __init__(self, client: Any, collection: str) -> None:
        self.client, self.collection = client, collection
        self._next = 0

    def put(self, items: Iterable[tuple[str, str]]) -> None:
        rows = []
        for name, text in items:
            for i, part in enumerate(parts(text)):
                rows.append({"id": self._next, "name": name, "part": i, "data": part})
                self._next += 1
        insert(self.client, self.collection, rows)

    def get_many(self, names: list[str]) -> dict[str, str]:
        if not names:
            return {}
        got = self.client.query(self.collection,
                                filter=f"name in [{','.join(map(quote, names))}]",
                                output_fields=["name", "part", "data"])
        pieces: dict[str, list[tuple[int, str]]] = {}
        for r in got:
            pieces.setdefault(r["name"], []).append((int(r["part"]), r["data"]))
        return {n: "".join(d for _, d in sorted(p)) for n, p in pieces.items()}

    def get(self, name: str) -> str | None:
        return self.get_many([name]).get(name)


def array_text(arr: np.ndarray) -> tuple[str, str]:
    """An array as base64 text, and the SHA-256 of its ``.npy`` bytes."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    raw = buf.getvalue()
    return base64.b64encode(raw).decode("ascii"), hashlib.sha256(raw).hexdigest()


def text_array(text: str, sha256: str) -> np.ndarray | None:
    """The array back, or None if its bytes are not those recorded."""
    raw = base64.b64decode(text.encode("ascii"))
    if hashlib.sha256(raw).hexdigest() != sha256:
        return None
    return np.load(io.BytesIO(raw), allow_pickle=False)


# -- the registry of generations ------------------------------------------------------------
class Registry:
    """``CURRENT`` and one row per generation, in ``<prefix>_generations``."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client, self.collection = client, f"{prefix}_generations"

    def exists(self) -> bool:
        return bool(self.client.has_collection(self.collection))

    def ensure(self) -> None:
        if not self.exists():
            create(self.client, self.collection,
                   [("name", "VARCHAR", {"max_length": 256}),
                    ("data", "VARCHAR", {"max_length": VARCHAR_MAX})])

    def _put(self, name: str, data: str) -> None:
        self.client.upsert(self.collection, [{"name": name, "data": data, PAD: [0.0, 0.0]}])

    def current(self) -> str | None:
        if not self.exists():
            return None
        got = self.client.query(self.collection, filter=f"name == {quote(CURRENT)}",
                                output_fields=["data"])
        return str(got[0]["data"]) or None if got else None

    def entries(self) -> dict[str, dict[str, Any]]:
        if not self.exists():
            return {}
        got = self.client.query(self.collection, filter='name like "gen:%"',
                                output_fields=["name", "data"])
        return {r["name"][4:]: json.loads(r["data"]) for r in got}

    def register(self, gen: str) -> None:
        """Before any of ``gen``'s collections exists: whatever a crash leaves is known."""
        self.ensure()
        self._put(f"gen:{gen}", json.dumps({"registered_at": time.time()}))

    def switch(self, gen: str) -> str | None:
        """Make ``gen`` current; returns the generation it replaces."""
        entries = self.entries()
        old = self.current()
        now = time.time()
        self._put(f"gen:{gen}", json.dumps({**entries.get(gen, {}), "current_at": now}))
        self._put(CURRENT, gen)
        if old and old != gen:
            self._put(f"gen:{old}", json.dumps({**entries.get(old, {}), "retired_at": now}))
        return old

    def forget(self, gen: str) -> None:
        self.client.delete(self.collection, filter=f"name == {quote('gen:' + gen)}")
