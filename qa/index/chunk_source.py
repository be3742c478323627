"""The chunk store interface search and the service read through: the SQLite file of a
generation (``qa.index.store.ChunkStore``) or its records in Milvus
(``qa.index.milvus_store.MilvusChunkStore``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from qa.types import Chunk, Document


class ChunkSource(Protocol):
    """One generation's chunks by row id (the vector and BM25 row), and its documents."""

    @property
    def documents(self) -> Mapping[str, Document]:
        """doc_id -> Document (with empty ``text``), read on demand."""
        ...

    def count(self) -> int: ...

    def get(self, rows: Sequence[int]) -> dict[int, Chunk]: ...

    def rows_of(self, doc_ids: Iterable[str]) -> list[int]: ...

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        """A document's chunks in reading order (paragraph, window)."""
        ...

    def text_of(self, doc_id: str) -> str | None:
        """The text the document was read as: every chunk's offsets index into it."""
        ...

    def close(self) -> None: ...
