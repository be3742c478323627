"""Which published generation is live in Milvus, and retiring the others.

The registry (``qa.index.milvus_records.Registry``, one collection per prefix) names the
live generation (``CURRENT``) and records when each was registered, made current and
replaced. Retiring needs no file lock: a build drops the collections of every generation
that is neither current nor the one just replaced, once replaced for ``retire_after_s``
seconds (``QA_MILVUS_RETIRE_AFTER_S``, 0 by
default: the previous generation is always kept for replicas that have not switched yet,
and any older one goes). A generation whose build failed before it became current is
dropped the same way, by the time it was registered.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from qa.errors import QAError
from qa.index.manifest import FORMAT
from qa.index.milvus_records import Blobs, Registry, connect
from qa.index.milvus_store import collections

if TYPE_CHECKING:  # a type only: the store's module must not import this one back
    from qa.index.vectors.store import VectorStore

log = logging.getLogger("qa.index")


def _uri(cfg: VectorStore) -> str:
    if not cfg.uri:
        raise ValueError("vector_backend=milvus needs QA_MILVUS_URI (a file path for "
                         "milvus-lite, or http://host:19530 for a server)")
    return cfg.uri


def register(cfg: VectorStore, gen: str) -> None:
    client = connect(_uri(cfg), cfg.token)
    try:
        Registry(client, cfg.collection).register(gen)
    finally:
        client.close()


def switch(cfg: VectorStore, gen: str) -> str | None:
    """Make a published generation current; replicas move to it on their next check."""
    client = connect(_uri(cfg), cfg.token)
    try:
        return Registry(client, cfg.collection).switch(gen)
    finally:
        client.close()


def current(cfg: VectorStore) -> str | None:
    client = connect(_uri(cfg), cfg.token)
    try:
        return Registry(client, cfg.collection).current()
    finally:
        client.close()


def current_manifest(cfg: VectorStore) -> dict[str, Any] | None:
    """The live generation's published manifest (None without one)."""
    client = connect(_uri(cfg), cfg.token)
    try:
        gen = Registry(client, cfg.collection).current()
        names = collections(cfg.collection, gen) if gen else None
        if names is None or not client.has_collection(names["blobs"]):
            return None
        text = Blobs(client, names["blobs"]).get("manifest")
        return json.loads(text) if text else None
    finally:
        client.close()


def needs_build(cfg: VectorStore) -> bool:
    """No live generation in Milvus, or one this qa cannot load."""
    try:
        manifest = current_manifest(cfg)
    except QAError:
        raise
    except Exception:  # noqa: BLE001 - unreadable: `qa index` publishes a new one
        return True
    return manifest is None or manifest.get("format") != FORMAT


def _drop(client: Any, prefix: str, gen: str) -> list[str]:
    token = re.sub(r"[^0-9A-Za-z_]", "_", gen)
    dropped = []
    for name in client.list_collections():
        if name.startswith(f"{prefix}_") and (name.endswith(f"_{token}")
                                             or name.endswith(f"_{token}_terms")):
            client.drop_collection(name)
            dropped.append(name)
    return dropped


def discard(cfg: VectorStore, gen: str) -> None:
    """Best effort, after a failed build: drop what it wrote and forget it."""
    try:
        client = connect(_uri(cfg), cfg.token)
        try:
            _drop(client, cfg.collection, gen)
            Registry(client, cfg.collection).forget(gen)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - the next build's retire() tries again
        log.warning("could not drop the collections of %s: %s", gen, exc)


def retire(cfg: VectorStore, now: float | None = None) -> list[str]:
    """Drop the generations that are neither current nor the one it replaced, once replaced
    (or, never current, registered) ``cfg.retire_after_s`` ago; returns their names."""
    now = time.time() if now is None else now
    client = connect(_uri(cfg), cfg.token)
    try:
        registry = Registry(client, cfg.collection)
        live = registry.current()
        entries = registry.entries()
        if live is None:
            return []
        replaced = {g: e["retired_at"] for g, e in entries.items() if e.get("retired_at")}
        previous = max(replaced, key=lambda g: replaced[g]) if replaced else None
        live_at = entries.get(live, {}).get("registered_at", now)
        gone = []
        for gen, entry in sorted(entries.items()):
            if gen in (live, previous):
                continue
            since = entry.get("retired_at") or entry.get("registered_at", 0.0)
            if entry.get("retired_at") is None and since > live_at:
                continue  # registered after the live one: a build still running
            if now - since < cfg.retire_after_s:
                continue
            _drop(client, cfg.collection, gen)
            registry.forget(gen)
            gone.append(gen)
        return gone
    finally:
        client.close()


def is_registered(cfg: VectorStore, gen: str) -> bool:
    client = connect(_uri(cfg), cfg.token)
    try:
        return gen in Registry(client, cfg.collection).entries()
    finally:
        client.close()


class PointerReader:
    """Reads the registry's ``CURRENT`` over one client, for a service's reload checks."""

    def __init__(self, cfg: VectorStore) -> None:
        self._cfg = cfg
        self._client: Any = None

    def __call__(self) -> str | None:
        if self._client is None:
            self._client = connect(_uri(self._cfg), self._cfg.token)
        try:
            return Registry(self._client, self._cfg.collection).current()
        except Exception:
            self.close()  # reconnect on the next call
            raise

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
