"""A small thread-safe least-recently-used map, for the caches of a serving process: query
vectors (qa.retrieve.search), the second encoder's question and word vectors
(qa.retrieve.second), documents read from Milvus (qa.index.milvus_store). Values are never
computed under the lock: callers look up, compute what is missing, then put it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
        """(the cached values among ``keys``, the other keys once each, in order); the hits
        become the most recently used."""
        hits: dict[K, V] = {}
        missing: list[K] = []
        with self._lock:
            for key in dict.fromkeys(keys):
                if key in self._data:
                    self._data.move_to_end(key)
                    hits[key] = self._data[key]
                else:
                    missing.append(key)
        return hits, missing

    def get(self, key: K) -> V | None:
        return self.get_many([key])[0].get(key)

    def put(self, items: Mapping[K, V]) -> None:
        with self._lock:
            for key, value in items.items():
                self._data[key] = value
                self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
