"""The vector index interface: one per engine (FAISS, Milvus), chosen by the manifest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class VectorIndex(Protocol):
    """Row ids are 0..count-1, in the order vectors were added."""

    dim: int

    def add(self, vectors: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, path: Path) -> None: ...

    def count(self) -> int: ...

    def describe(self) -> dict[str, Any]: ...
