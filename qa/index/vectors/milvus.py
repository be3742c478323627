"""The vector index in Milvus: milvus-lite (an embedded local file) for tests and small
deployments, a Milvus server or cluster (``http://host:19530``) in production.

The only module that imports ``pymilvus``, lazily. Implements the ``VectorIndex`` protocol
of ``qa.index.vectors.faiss``: row ids are the collection's INT64 primary key, 0..count-1 in the order
vectors were added, so the chunk store and BM25 rows line up exactly as with FAISS.

One collection holds one index generation. The vectors live in Milvus, not in the
generation folder: ``save`` flushes the collection and writes a small pointer file, and the
manifest's ``vectors`` entry (``describe()``) names the URI and collection that ``load``
reopens. The token is never written anywhere; it comes from settings at load time.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from qa.errors import IndexMismatch, IndexNotReady, ModelUnavailable, QAError

log = logging.getLogger("qa.index")
F = TypeVar("F", bound=Callable[..., Any])

_ID, _VEC = "id", "vector"
_INSERT_BATCH = 5_000  # 5,000 x 384 float32 is ~8 MB, well under gRPC's 64 MB message cap
_FETCH_BATCH = 1_000  # ids per query: the "id in [...]" filter string stays a few KB
# Per index type, used where settings give none. HNSW: the FAISS defaults measured in
# docs/SCALING.md (the same algorithm); IVF: common starting points, not measured here.
_SEARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "FLAT": {}, "HNSW": {"ef": 128}, "IVF_FLAT": {"nprobe": 32}, "AUTOINDEX": {}}
_BUILD_DEFAULTS: dict[str, dict[str, Any]] = {
    "FLAT": {}, "HNSW": {"M": 32, "efConstruction": 80}, "IVF_FLAT": {"nlist": 1024},
    "AUTOINDEX": {}}


def _pymilvus():
    try:
        import pymilvus  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelUnavailable("the Milvus backend needs pymilvus (and milvus-lite for a local "
                               "file URI): run `pip install 'qa[milvus]'` or "
                               "`pip install pymilvus milvus-lite`") from exc
    return pymilvus


def translated(what: str) -> Callable[[F], F]:
    """A Milvus call at query time: any error but ours becomes an IndexNotReady (503,
    details in the log), never an unexpected 500."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except QAError:
                raise
            except Exception as exc:
                log.warning("Milvus %s failed: %s: %s", what, type(exc).__name__, exc)
                raise IndexNotReady(f"the {what} in Milvus cannot be read now; retry (the "
                                    "server log has the details)") from None
        return call  # type: ignore[return-value]
    return wrap


def is_local_uri(uri: str) -> bool:
    """A file path (milvus-lite, embedded) rather than a server address."""
    return "://" not in uri


def collection_name(base: str, generation: str | None = None) -> str:
    """A valid Milvus collection name (letters, digits, underscores) for one generation."""
    name = f"{base}_{generation}" if generation else base
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


class MilvusIndex:
    """Inner-product search over unit vectors in one Milvus collection."""

    def __init__(self, dim: int, uri: str, collection: str = "qa_chunks",
                 token: str | None = None, index_type: str | None = None,
                 index_params: dict[str, Any] | None = None,
                 search_params: dict[str, Any] | None = None, *, create: bool = True) -> None:
        """Open (``create=False``) or create afresh (``create=True``, dropping a collection
        of that name) the collection. ``index_type`` defaults to FLAT on milvus-lite and
        HNSW on a server."""
        pm = _pymilvus()
        self.dim = dim
        self.uri = str(Path(uri).resolve()) if is_local_uri(uri) else uri
        self.collection = collection
        default = "FLAT" if is_local_uri(uri) else "HNSW"
        self.index_type = (index_type or default).upper()
        self.index_params = dict(_BUILD_DEFAULTS.get(self.index_type, {}), **(index_params or {}))
        self.search_params = dict(_SEARCH_DEFAULTS.get(self.index_type, {}),
                                  **(search_params or {}))
        # Scoring every row means fetching every vector over the network: search proposes
        # candidates instead, and ``score`` rescores just those.
        self.exhaustive = False
        if is_local_uri(uri):
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = pm.MilvusClient(uri=self.uri, token=token or "")
        except Exception as exc:
            hint = (" (a milvus-lite file can be open in one process at a time: is another "
                    "`qa` process using it?)" if is_local_uri(uri) else "")
            raise IndexNotReady(f"cannot open Milvus at {self.uri}: {exc}{hint}") from exc
        if create:
            self._create()
            self._count = 0
        else:
            if not self._client.has_collection(collection):
                self._client.close()
                raise IndexNotReady(f"Milvus at {self.uri} has no collection {collection!r}: "
                                    "rebuild the index with `qa index`")
            self._client.load_collection(collection)
            self._count = self._stored_count()

    def _create(self) -> None:
        pm = _pymilvus()
        client = self._client
        if client.has_collection(self.collection):
            client.drop_collection(self.collection)
        schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID, pm.DataType.INT64, is_primary=True)
        schema.add_field(_VEC, pm.DataType.FLOAT_VECTOR, dim=self.dim)
        index = client.prepare_index_params()
        index.add_index(field_name=_VEC, index_type=self.index_type, metric_type="IP",
                        params=self.index_params)
        # Strong consistency: a search right after add() sees every row, as with FAISS.
        client.create_collection(self.collection, schema=schema, index_params=index,
                                 consistency_level="Strong")

    def _stored_count(self) -> int:
        rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    @classmethod
    def load(cls, path: Path | None, meta: dict[str, Any], token: str | None = None,
             uri: str | None = None) -> MilvusIndex:
        """Reopen the collection a manifest's ``vectors`` entry names; ``uri`` overrides the
        recorded one (the same data served from another address)."""
        index = cls(meta["dim"], uri or meta["uri"], meta["collection"], token,
                    meta.get("index_type"), meta.get("index_params"), meta.get("search_params"),
                    create=False)
        fields = index._client.describe_collection(index.collection)["fields"]
        dim = next(int(f["params"]["dim"]) for f in fields if f["name"] == _VEC)
        problem = None
        if dim != meta["dim"]:
            problem = f"has dimension {dim}, manifest says {meta['dim']}"
        elif "count" in meta and index.count() != meta["count"]:
            problem = f"holds {index.count()} vectors, manifest says {meta['count']}"
        if problem:
            index.close()
            raise IndexMismatch(f"Milvus collection {index.collection!r} {problem}: "
                                "rebuild the index with `qa index`")
        return index

    def add(self, vectors: np.ndarray) -> None:
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) vectors, got {vecs.shape}")
        for lo in range(0, len(vecs), _INSERT_BATCH):
            block = vecs[lo:lo + _INSERT_BATCH]
            self._client.insert(self.collection, [
                {_ID: self._count + lo + i, _VEC: v} for i, v in enumerate(block)])
        self._count += len(vecs)

    @translated("vector index")
    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k exist."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self._count == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        k = max(1, min(k, self._count))
        scores = np.full((len(q), k), np.finfo(np.float32).min, np.float32)  # as FAISS pads
        ids = np.full((len(q), k), -1, np.int64)
        expr = ""
        if allowed is not None:
            rows = sorted({int(r) for r in allowed})
            if not rows:
                return scores, ids
            # A literal list: milvus-lite 3.2 rejects templated filters ("id in {ids}").
            expr = f"{_ID} in [{','.join(map(str, rows))}]"
        hits = self._client.search(
            self.collection, data=[v.tolist() for v in q], filter=expr, limit=k,
            output_fields=[_ID], anns_field=_VEC,
            search_params={"metric_type": "IP", "params": self.search_params})
        for i, row in enumerate(hits):
            for j, h in enumerate(row[:k]):
                ids[i, j] = int(h["id"])
                scores[i, j] = float(h["distance"])
        return scores, ids

    def score(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Exact inner products with the given rows, their vectors fetched by primary key."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        ids = (np.arange(self._count, dtype=np.int64) if rows is None
               else np.asarray(rows, dtype=np.int64).reshape(-1))
        if ids.size == 0:
            return np.zeros(0, np.float32)
        return self.fetch(ids) @ q

    @translated("vector index")
    def fetch(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows``, in the order given, as an (n, dim) array."""
        ids = np.asarray(rows, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            return np.zeros((0, self.dim), np.float32)
        unique = np.unique(ids)
        found: dict[int, np.ndarray] = {}
        for lo in range(0, len(unique), _FETCH_BATCH):
            part = unique[lo:lo + _FETCH_BATCH]
            got = self._client.query(self.collection,
                                     filter=f"{_ID} in [{','.join(map(str, part.tolist()))}]",
                                     output_fields=[_ID, _VEC])
            for rec in got:
                found[int(rec[_ID])] = np.asarray(rec[_VEC], dtype=np.float32)
        missing = [int(i) for i in unique if int(i) not in found]
        if missing:
            raise IndexMismatch(f"Milvus collection {self.collection!r} lacks rows "
                                f"{missing[:5]}: rebuild the index with `qa index`")
        return np.stack([found[int(i)] for i in ids])

    def flush(self) -> None:
        """Make the rows durable in Milvus."""
        self._client.flush(self.collection)

    def save(self, path: Path) -> None:
        """Make the rows durable in Milvus and leave a pointer to them at ``path``."""
        self.flush()
        meta = {k: v for k, v in self.describe().items() if k != "search_params"}
        Path(path).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def count(self) -> int:
        return self._count

    def describe(self) -> dict[str, Any]:
        return {"engine": "milvus", "kind": self.index_type.lower(), "dim": self.dim,
                "metric": "inner_product", "uri": self.uri, "collection": self.collection,
                "index_type": self.index_type, "index_params": self.index_params,
                "search_params": self.search_params, "count": self._count}

    def drop(self) -> None:
        """Delete the collection (an old generation's vectors)."""
        self._client.drop_collection(self.collection)

    def close(self) -> None:
        self._client.close()


class MilvusRows:
    """A collection's vectors read by row like an array (``rows[ids]``, ``len``, ``shape``),
    for code written against a memory-mapped matrix: the second encoder's scoring of
    candidate rows (qa.retrieve.fusion.chunk_scores). Only ever indexed by row arrays."""

    def __init__(self, index: MilvusIndex) -> None:
        self.index = index
        self.shape = (index.count(), index.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.index.fetch(np.asarray(rows, dtype=np.int64))


# pymilvus pings its server every 10 s, with or without calls in flight. grpc's default
# server policy allows one ping per 5 min without data and answers the third early one with
# GOAWAY "too_many_pings"; pymilvus's reconnect after that failed in a replica left idle for
# a minute (docs/SCALING.md). A Milvus server accepts these pings; this server must too.
_KEEPALIVE_OPTIONS = [("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                      ("grpc.http2.max_ping_strikes", 0),
                      ("grpc.keepalive_permit_without_calls", 1)]
_MAX_MESSAGE = 256 * 2**20  # as milvus-lite's own server and Milvus standalone


def serve_lite(data_dir: Path, host: str = "127.0.0.1", port: int = 19530,
               on_ready: Any = None, max_workers: int = 16) -> None:
    """Run milvus-lite as one standalone gRPC server on ``host:port`` that several processes
    share (``QA_MILVUS_URI=http://host:port``), until SIGTERM or SIGINT. milvus-lite's own
    ``milvus-lite server`` does the same without the keepalive policy pymilvus needs.
    ``on_ready(port)`` is called once it listens (the bound port: 0 picks a free one)."""
    import signal
    from concurrent import futures

    _pymilvus()
    try:
        import grpc  # type: ignore[import-untyped]
        from milvus_lite import MilvusLite  # type: ignore[import-untyped]
        from milvus_lite.adapter.grpc.servicer import (  # type: ignore[import-untyped]
            MilvusServicer,
        )
        from pymilvus.grpc_gen import milvus_pb2_grpc  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelUnavailable("a Milvus server here needs milvus-lite: run "
                               "`pip install 'qa[milvus]'`") from exc
    db = MilvusLite(str(data_dir))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=[
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ("grpc.max_send_message_length", _MAX_MESSAGE), *_KEEPALIVE_OPTIONS])
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(db), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise IndexNotReady(f"cannot listen on {host}:{port}")
        server.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: server.stop(grace=5))
        if on_ready is not None:
            on_ready(bound)
        server.wait_for_termination()
    finally:
        server.stop(grace=0)
        db.close()  # releases the data folder's lock
