"""Opening the live generation read-only for search: checked, then held. (With the
Milvus backend it is opened from Milvus alone: ``qa.index.milvus_generation``.)

Loading verifies the files against the manifest's checksums (``qa.index.integrity``) and
their shapes against each other, and turns any library error of a damaged file (FAISS,
numpy, SciPy, SQLite) into an ``IndexCorrupt`` naming the file. While open, a generation is
held by a shared lock on its manifest, so a build never deletes it under a reader.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qa.encoders.base import Embedder
from qa.errors import IndexNotReady
from qa.index.integrity import verify_files
from qa.index.loaded import (
    LoadedIndex,
    _check_shapes,
    _vector_file,
    check_fits,
    reading,
)
from qa.index.manifest import current_generation, read_manifest
from qa.index.second import check_second, open_second
from qa.index.store import ChunkStore
from qa.index.vectors.store import VectorStore
from qa.ingest.tokenize import Tokenizer
from qa.locking import SharedLock

__all__ = ["LoadedIndex", "Verify", "open_index", "reading"]

log = logging.getLogger("qa.index")
Verify = Literal["quick", "full", "none"]


def open_index(index_dir: Path, embedder: Embedder | None = None,
               vector_store: VectorStore | None = None, *,
               verify: Verify = "quick") -> LoadedIndex:
    """Open the live generation, refusing one built by other weights than ``embedder`` and
    one whose files fail ``verify`` ("quick": sizes, whole hashes of small files, sampled
    hashes of large ones; "full": every byte; "none")."""
    if vector_store is not None and vector_store.backend == "milvus":
        # Everything comes from Milvus: the index folder is not read (docs/SCALING.md).
        from qa.index.milvus_generation import open_published

        return open_published(index_dir, embedder, vector_store)
    for _ in range(3):
        gen = current_generation(index_dir)
        if gen is None:
            raise IndexNotReady(f"no index in {index_dir}: build it with `qa index` "
                                "(or start the service with `qa serve`, which builds it)")
        try:
            lock = SharedLock(gen / "manifest.json")
        except FileNotFoundError:
            continue  # replaced and deleted between reading CURRENT and opening it
        try:
            return _open(gen, lock, embedder, vector_store or VectorStore(), verify)
        except BaseException:
            lock.release()
            raise
    raise IndexNotReady("the index was replaced several times while loading; retry")


def _open(gen: Path, lock: SharedLock, embedder: Embedder | None, store_cfg: VectorStore,
          verify: Verify) -> LoadedIndex:
    manifest = read_manifest(gen)
    second = check_fits(gen, manifest, embedder)
    if verify != "none":
        verify_files(gen, manifest, full=verify == "full")
    with reading(gen, "manifest.json"):
        n = int(manifest["counts"]["chunks"])
        tokenizer = Tokenizer(manifest["lexical"].get("user_words") or [])
    with reading(gen, _vector_file("vectors", manifest["vectors"])):
        vectors = store_cfg.open(gen, "vectors", manifest["vectors"])
    local_lexical = not str(manifest["lexical"].get("engine", "bm25")).startswith("milvus")
    with reading(gen, "bm25.npz" if local_lexical else "the Milvus text collection"):
        lexical = store_cfg.open_lexical(gen, manifest["lexical"])
    with reading(gen, "chunks.sqlite"):
        store = ChunkStore(gen / "chunks.sqlite")
    loaded = LoadedIndex(gen, manifest, vectors, lexical, store, tokenizer, lock=lock)
    try:
        _load_arrays(gen, manifest, loaded, store_cfg)
        _check_shapes(gen, manifest, loaded, n)
        if second is not None:
            # A service without a second encoder ignores these files: its e5-only search is
            # exactly what an e5-only generation gives.
            with reading(gen, "use_vectors.npy"):
                loaded.second = open_second(gen, manifest)
            check_second(gen, loaded.second, n, loaded.sentence_offsets)
    except BaseException:
        store.close()
        raise
    return loaded


def _load_arrays(gen: Path, manifest: dict[str, Any], loaded: LoadedIndex,
                 store_cfg: VectorStore) -> None:
    if manifest.get("sentences"):
        with reading(gen, _vector_file("sentences", manifest["sentences"])):
            loaded.sentences = store_cfg.open(gen, "sentences", manifest["sentences"])
        with reading(gen, "sentence_offsets.npy"):
            offsets = np.load(gen / "sentence_offsets.npy")
            loaded.sentence_offsets = offsets
            loaded.sentence_owner = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64),
                                              np.diff(offsets))
    if (gen / "question_rows.npy").exists():
        with reading(gen, "question_rows.npy"):
            loaded.question_rows = np.load(gen / "question_rows.npy")
    if manifest.get("hubness"):
        with reading(gen, "hub_en.npy"):
            loaded.hub_en = np.load(gen / "hub_en.npy")
