"""The vector index interface: one implementation per engine (FAISS, Milvus), chosen by the
manifest. Search reaches vectors only through it, so an engine that keeps its vectors
elsewhere (a Milvus server) needs none on the serving machine's disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class VectorIndex(Protocol):
    """Unit vectors under row ids 0..count-1, in the order they were added.

    ``exhaustive`` says that scoring every row (``score(query)``) costs no more than a
    nearest-neighbour search: true for an exact in-memory index, whose search is that same
    scan; false for an approximate or remote one, where search proposes candidates and
    ``score(query, rows)`` rescores just those exactly.
    """

    dim: int
    exhaustive: bool

    def add(self, vectors: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k exist."""
        ...

    def score(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Exact inner products of one query vector with the given rows (all rows if None),
        in the order given."""
        ...

    def save(self, path: Path) -> None: ...

    def count(self) -> int: ...

    def describe(self) -> dict[str, Any]: ...
