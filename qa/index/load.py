"""Opening the live generation read-only for search."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Embedder
from qa.errors import IndexMismatch, IndexNotReady
from qa.index.lexical import LexicalIndex
from qa.index.manifest import FORMAT, current_generation, read_manifest
from qa.index.store import ChunkStore
from qa.index.vectors.base import VectorIndex
from qa.index.vectors.store import VectorStore
from qa.ingest.tokenize import Tokenizer


@dataclass
class LoadedIndex:
    """Everything search needs from one generation, opened read-only."""

    path: Path
    manifest: dict[str, Any]
    vectors: VectorIndex
    lexical: LexicalIndex
    store: ChunkStore
    tokenizer: Tokenizer
    sentences: VectorIndex | None = None
    sentence_offsets: np.ndarray | None = None
    sentence_owner: np.ndarray | None = None
    hub_en: np.ndarray | None = None
    question_rows: np.ndarray | None = None


def open_index(index_dir: Path, embedder: Embedder | None = None,
               vector_store: VectorStore | None = None) -> LoadedIndex:
    """Open the live generation, refusing one built by other weights than ``embedder``."""
    gen = current_generation(index_dir)
    if gen is None:
        raise IndexNotReady(f"no index in {index_dir}: build it with `qa index` "
                            "(or start the service with `qa serve`, which builds it)")
    manifest = read_manifest(gen)
    if manifest.get("format") != FORMAT:
        raise IndexMismatch(f"index format {manifest.get('format')!r} is not {FORMAT!r}: "
                            "rebuild it with `qa index --force`")
    if embedder is not None and manifest["model"]["fingerprint"] != embedder.fingerprint:
        raise IndexMismatch(
            f"the index in {index_dir} was built with {manifest['model']['id']} "
            f"({manifest['model']['fingerprint']}), but the service loaded {embedder.model_id} "
            f"({embedder.fingerprint}); rebuild it with `qa index`")
    store_cfg = vector_store or VectorStore()
    vectors = store_cfg.open(gen, "vectors", manifest["vectors"])
    lexical = store_cfg.open_lexical(gen, manifest["lexical"])
    store = ChunkStore(gen / "chunks.sqlite")
    tokenizer = Tokenizer(manifest["lexical"].get("user_words") or [])
    loaded = LoadedIndex(gen, manifest, vectors, lexical, store, tokenizer)
    if manifest.get("sentences"):
        loaded.sentences = store_cfg.open(gen, "sentences", manifest["sentences"])
        offsets = np.load(gen / "sentence_offsets.npy")
        loaded.sentence_offsets = offsets
        loaded.sentence_owner = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64),
                                          np.diff(offsets))
    if (gen / "question_rows.npy").exists():
        loaded.question_rows = np.load(gen / "question_rows.npy")
    if manifest.get("hubness"):
        loaded.hub_en = np.load(gen / "hub_en.npy")
    return loaded
