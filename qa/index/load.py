"""Opening the live generation read-only for search."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Embedder
from qa.errors import IndexMismatch, IndexNotReady
from qa.index.lexical import BM25Index
from qa.index.manifest import FORMAT, current_generation, read_manifest
from qa.index.second import SecondIndex, open_second, same_encoders, second_of
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
    matrix: np.ndarray
    lexical: BM25Index
    store: ChunkStore
    tokenizer: Tokenizer
    sentences: VectorIndex | None = None
    sentence_matrix: np.ndarray | None = None
    sentence_offsets: np.ndarray | None = None
    sentence_owner: np.ndarray | None = None
    hub_en: np.ndarray | None = None
    question_rows: np.ndarray | None = None
    second: SecondIndex | None = None  # the second encoder's arrays, when the service has one


def _mapped(path: Path) -> np.ndarray:
    """A read-only memory map as a plain ndarray: the same pages, without np.memmap's
    Python-level indexing (its ``__getitem__``/``__array_finalize__`` were 12% of the server's
    samples at c=32 in a py-spy profile)."""
    return np.asarray(np.load(path, mmap_mode="r"))


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
    second = second_of(embedder) if embedder is not None else None
    if second is not None and not same_encoders(manifest, second):
        old = manifest.get("second") or {}
        raise IndexMismatch(
            f"the index in {index_dir} was built with the second encoder "
            f"{old.get('id', 'none')} ({old.get('fingerprint', '-')}), but the service loaded "
            f"{second.model_id} ({second.fingerprint}); rebuild it with `qa index` "
            "(or set QA_SECOND_ENCODER=none)")
    store_cfg = vector_store or VectorStore()
    vectors = store_cfg.open(gen, "vectors", manifest["vectors"])
    matrix = _mapped(gen / "vectors.npy")
    lexical = BM25Index.load(gen)
    store = ChunkStore(gen / "chunks.sqlite")
    tokenizer = Tokenizer(manifest["lexical"].get("user_words") or [])
    loaded = LoadedIndex(gen, manifest, vectors, matrix, lexical, store, tokenizer)
    if manifest.get("sentences"):
        loaded.sentences = store_cfg.open(gen, "sentences", manifest["sentences"])
        loaded.sentence_matrix = _mapped(gen / "sentences.npy")
        offsets = np.load(gen / "sentence_offsets.npy")
        loaded.sentence_offsets = offsets
        loaded.sentence_owner = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64),
                                          np.diff(offsets))
    if (gen / "question_rows.npy").exists():
        loaded.question_rows = np.load(gen / "question_rows.npy")
    if manifest.get("hubness"):
        loaded.hub_en = np.load(gen / "hub_en.npy")
    if second is not None:
        # A service without a second encoder ignores these files: its e5-only search is
        # exactly what an e5-only generation gives.
        loaded.second = open_second(gen, manifest)
    return loaded
