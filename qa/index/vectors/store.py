"""Where a generation lives: FAISS and BM25 files inside its folder, or Milvus collections
(then the whole generation is published there too: qa.index.milvus_generation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.index.manifest import read_manifest
from qa.index.rows import Rows
from qa.index.vectors.base import VectorIndex
from qa.index.vectors.factory import drop_vectors, load_vector_index, make_vector_index
from qa.index.vectors.milvus import collection_name


@dataclass(frozen=True)
class VectorStore:
    """Where the vectors of a generation live: FAISS files inside it (the default), or one
    Milvus collection per generation and kind (``backend="milvus"``, docs/SCALING.md)."""

    backend: str = "faiss"
    uri: str | None = None
    token: str | None = None
    collection: str = "qa_chunks"
    index_type: str | None = None
    index_params: dict[str, Any] | None = None
    search_params: dict[str, Any] | None = None
    # Milvus: how long a replaced generation's collections outlive its replacement
    # (beyond the previous generation, which is always kept); QA_MILVUS_RETIRE_AFTER_S.
    retire_after_s: float = 0.0

    def _file(self, folder: Path, kind: str, engine: str) -> Path:
        return folder / (f"{kind}.milvus.json" if engine == "milvus" else f"{kind}.faiss")

    def _new_index(self, dim: int, n: int, kind: str, gen_name: str,
                   hnsw_threshold: int) -> VectorIndex:
        """An empty index of this store's engine for ``n`` vectors of one generation."""
        return make_vector_index(
            dim, n, backend=self.backend, hnsw_threshold=hnsw_threshold,
            milvus_uri=self.uri, milvus_token=self.token,
            collection=collection_name(f"{self.collection}_{kind}", gen_name),
            milvus_index_type=self.index_type, milvus_index_params=self.index_params,
            milvus_search_params=self.search_params)

    def create(self, dim: int, vectors: np.ndarray, folder: Path, kind: str, gen_name: str,
               hnsw_threshold: int) -> VectorIndex:
        index = self._new_index(dim, len(vectors), kind, gen_name, hnsw_threshold)
        index.add(vectors)
        index.save(self._file(folder, kind, self.backend))
        return index

    def write(self, dim: int, rows: Rows, folder: Path, kind: str, gen_name: str,
              hnsw_threshold: int) -> dict[str, Any]:
        """:meth:`create` from a vectors file written by the build, returning the index's
        description for the manifest. An exact FAISS index is written a block at a time
        without ever being in memory, and Milvus gets the rows a block at a time; an HNSW
        graph is built in memory (it needs every vector), from the file mapped rather than
        copied, so the build holds one copy, FAISS's."""
        if self.backend == "faiss" and len(rows) < hnsw_threshold:
            from qa.index.vectors.faiss import write_flat

            if write_flat(self._file(folder, kind, "faiss"), dim, len(rows), rows.blocks()):
                return {"engine": "faiss", "kind": "flat", "dim": dim, "metric": "inner_product"}
        index = self._new_index(dim, len(rows), kind, gen_name, hnsw_threshold)
        if self.backend == "faiss":
            # One add of every row, as before: HNSW blocks added one by one build another graph.
            index.add(np.load(rows.path, mmap_mode="r"))
        else:
            for block in rows.blocks():
                index.add(block)
        index.save(self._file(folder, kind, self.backend))
        description: dict[str, Any] = index.describe()
        return description

    def open(self, folder: Path, kind: str, meta: dict[str, Any]) -> VectorIndex:
        engine = meta.get("engine", "faiss")
        return load_vector_index(self._file(folder, kind, engine), meta,
                                 milvus_token=self.token, milvus_uri=self.uri)

    @property
    def lexical_engine(self) -> str:
        """The manifest's ``lexical.engine`` this store writes."""
        return "milvus-sparse" if self.backend == "milvus" else "bm25"

    def save_lexical(self, bm25: Any, folder: Path, gen_name: str) -> dict[str, Any]:
        """Write the lexical index where the vectors go: BM25 files in the generation, or
        (Milvus) its weights as sparse vectors; returns its manifest entry."""
        if self.backend != "milvus":
            bm25.save(folder)
            return {"engine": "bm25", "k1": bm25.k1, "b": bm25.b}
        from qa.index.milvus_lexical import MilvusLexical

        lex = MilvusLexical.create(self.uri or "", collection_name(f"{self.collection}_text",
                                                                   gen_name), self.token, bm25)
        lex.close()
        return lex.describe()

    def open_lexical(self, folder: Path, meta: dict[str, Any]) -> Any:
        if str(meta.get("engine", "")).startswith("milvus"):
            from qa.index.milvus_lexical import MilvusLexical

            return MilvusLexical.load(meta, token=self.token, uri=self.uri)
        from qa.index.lexical import BM25Index

        return BM25Index.load(folder)

    # -- Milvus: the generation published, its registry and retirement --------------------
    @property
    def published(self) -> bool:
        """Whether generations are published whole to Milvus (and served from there)."""
        return self.backend == "milvus"

    def drop(self, folder: Path) -> None:
        """Best effort: remove a replaced generation's Milvus collections (one built before
        generations were published whole: qa.index.generations.remove_unused leaves the
        published ones to qa.index.milvus_registry.retire)."""
        try:
            manifest = read_manifest(folder)
        except (OSError, ValueError):
            return
        for key in ("vectors", "sentences"):
            meta = manifest.get(key)
            if meta and meta.get("engine") == "milvus":
                try:
                    drop_vectors(meta, milvus_token=self.token)
                except Exception:  # noqa: BLE001 - a leftover collection is not an error
                    pass
        lexical = manifest.get("lexical") or {}
        if str(lexical.get("engine", "")).startswith("milvus"):
            from qa.index.milvus_lexical import drop_collections

            try:
                drop_collections(lexical, token=self.token)
            except Exception:  # noqa: BLE001 - a leftover collection is not an error
                pass


