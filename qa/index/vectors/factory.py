"""Choosing, creating, opening and dropping a vector index by engine name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qa.index.vectors.faiss import FaissIndex
from qa.index.vectors.milvus import MilvusIndex


def make_vector_index(dim: int, n: int, *, backend: str = "faiss", hnsw_threshold: int = 200_000,
                      milvus_uri: str | None = None, milvus_token: str | None = None,
                      collection: str = "qa_chunks", milvus_index_type: str | None = None,
                      milvus_index_params: dict[str, Any] | None = None,
                      milvus_search_params: dict[str, Any] | None = None) -> Any:
    """A new, empty index for ``n`` vectors of ``dim`` on the configured backend: FAISS flat
    or HNSW by size, or a fresh Milvus collection (``collection`` should be unique per
    generation: see ``collection_name``)."""
    if backend == "faiss":
        return FaissIndex.for_size(dim, n, hnsw_threshold=hnsw_threshold)
    if backend == "milvus":
        if not milvus_uri:
            raise ValueError("vector_backend=milvus needs QA_MILVUS_URI (a file path for "
                             "milvus-lite, or http://host:19530 for a server)")
        return MilvusIndex(dim, milvus_uri, collection, milvus_token, milvus_index_type,
                           milvus_index_params, milvus_search_params)
    raise ValueError(f"unknown vector backend {backend!r} (faiss or milvus)")


def drop_vectors(meta: dict[str, Any], *, milvus_token: str | None = None) -> None:
    """Delete an old generation's vectors where they live outside its folder (a Milvus
    collection); nothing to do for FAISS, whose files go with the folder."""
    if meta.get("engine") != "milvus":
        return
    index = MilvusIndex(meta["dim"], meta["uri"], meta["collection"], milvus_token, create=False)
    try:
        index.drop()
    finally:
        index.close()


def load_vector_index(path: Path, meta: dict[str, Any], *, milvus_token: str | None = None,
                      milvus_uri: str | None = None, mmap: bool = False) -> Any:
    """Reopen the index a manifest's ``vectors`` entry describes, whichever engine wrote it."""
    if meta.get("engine", "faiss") == "milvus":
        return MilvusIndex.load(path, meta, token=milvus_token, uri=milvus_uri)
    return FaissIndex.load(path, meta, mmap=mmap)
