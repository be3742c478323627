"""Opening the live generation read-only for search: checked, then held.

Loading verifies the files against the manifest's checksums (``qa.index.integrity``) and
their shapes against each other, and turns any library error of a damaged file (FAISS,
numpy, SciPy, SQLite) into an ``IndexCorrupt`` naming the file. While open, a generation is
held by a shared lock on its manifest, so a build never deletes it under a reader.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qa.encoders.base import Embedder
from qa.errors import IndexMismatch, IndexNotReady, QAError
from qa.index.integrity import damaged, verify_files
from qa.index.lexical import BM25Index, LexicalIndex
from qa.index.manifest import FORMAT, current_generation, read_manifest
from qa.index.second import SecondIndex, check_second, open_second, same_encoders, second_of
from qa.index.store import ChunkStore
from qa.index.vectors.base import VectorIndex
from qa.index.vectors.store import VectorStore
from qa.ingest.tokenize import Tokenizer
from qa.locking import SharedLock

log = logging.getLogger("qa.index")
Verify = Literal["quick", "full", "none"]


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
    second: SecondIndex | None = None  # the second encoder's arrays, when the service has one
    lock: SharedLock | None = field(default=None, repr=False)

    def close(self) -> None:
        """Close the store's connections (every thread's) and let a build delete the
        generation. Only once no search uses it any more (qa.service.state counts them)."""
        self.store.close()
        for index in (self.vectors, self.sentences):
            closer = getattr(index, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer()
        if self.lock is not None:
            self.lock.release()


@contextlib.contextmanager
def reading(gen: Path, name: str) -> Iterator[None]:
    """Any error but our own while reading ``name`` means the file is damaged; the library's
    message and the path go to the log, the client gets the file's name."""
    try:
        yield
    except QAError:
        raise
    except Exception as exc:
        log.warning("cannot load %s: %s: %s", gen / name, type(exc).__name__, exc)
        raise damaged(gen, name, "it cannot be read") from None


def _vector_file(kind: str, meta: dict[str, Any]) -> str:
    return f"{kind}.milvus.json" if meta.get("engine") == "milvus" else f"{kind}.faiss"


def open_index(index_dir: Path, embedder: Embedder | None = None,
               vector_store: VectorStore | None = None, *,
               verify: Verify = "quick") -> LoadedIndex:
    """Open the live generation, refusing one built by other weights than ``embedder`` and
    one whose files fail ``verify`` ("quick": sizes, whole hashes of small files, sampled
    hashes of large ones; "full": every byte; "none")."""
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
    if manifest.get("format") != FORMAT:
        raise IndexMismatch(f"index format {manifest.get('format')!r} is not {FORMAT!r}: "
                            "rebuild it with `qa index --force`")
    if embedder is not None and manifest["model"]["fingerprint"] != embedder.fingerprint:
        raise IndexMismatch(
            f"the index in {gen.parent} was built with {manifest['model']['id']} "
            f"({manifest['model']['fingerprint']}), but the service loaded {embedder.model_id} "
            f"({embedder.fingerprint}); rebuild it with `qa index`")
    second = second_of(embedder) if embedder is not None else None
    if second is not None and not same_encoders(manifest, second):
        old = manifest.get("second") or {}
        raise IndexMismatch(
            f"the index in {gen.parent} was built with the second encoder "
            f"{old.get('id', 'none')} ({old.get('fingerprint', '-')}), but the service loaded "
            f"{second.model_id} ({second.fingerprint}); rebuild it with `qa index` "
            "(or set QA_SECOND_ENCODER=none)")
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


def _check_shapes(gen: Path, manifest: dict[str, Any], idx: LoadedIndex, n: int) -> None:
    """The files must agree with each other and the manifest, whatever their checksums say
    (a generation without checksums, or damage outside a large file's samples)."""
    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise damaged(gen, name, what)

    need(idx.vectors.count() == n, _vector_file("vectors", manifest["vectors"]),
         f"{idx.vectors.count()} vectors for {n} chunks")
    if isinstance(idx.lexical, BM25Index):
        need(idx.lexical.size == n
             and idx.lexical.weights.shape[1] == len(idx.lexical.vocab) == len(idx.lexical.idf),
             "bm25.npz", "its shape does not match the vocabulary")
    with reading(gen, "chunks.sqlite"):
        need(idx.store.count() == n, "chunks.sqlite", f"not {n} chunks")
    off = idx.sentence_offsets
    if off is not None and idx.sentences is not None:
        need(off.ndim == 1 and len(off) == n + 1 and off[0] == 0
             and bool(np.all(np.diff(off) >= 0)) and off[-1] == idx.sentences.count(),
             "sentence_offsets.npy", "the offsets do not match the sentence vectors")
    for name, arr in (("question_rows.npy", idx.question_rows), ("hub_en.npy", idx.hub_en)):
        if arr is not None:
            need(arr.shape == (n,), name, f"shape {arr.shape} for {n} chunks")
