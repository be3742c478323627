"""What search holds of one opened generation (``LoadedIndex``), and the checks every way
of opening one shares: the manifest fits the service's encoders, the parts agree in shape.
Opened from a folder by ``qa.index.load``, from Milvus by ``qa.index.milvus_generation``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Embedder
from qa.errors import IndexMismatch, QAError
from qa.index.chunk_source import ChunkSource
from qa.index.integrity import damaged
from qa.index.lexical import BM25Index, LexicalIndex
from qa.index.manifest import FORMAT
from qa.index.second import SecondIndex, same_encoders, second_of
from qa.index.vectors.base import VectorIndex
from qa.ingest.tokenize import Tokenizer
from qa.locking import SharedLock

log = logging.getLogger("qa.index")


@dataclass
class LoadedIndex:
    """Everything search needs from one generation, opened read-only."""

    path: Path
    manifest: dict[str, Any]
    vectors: VectorIndex
    lexical: LexicalIndex
    store: ChunkSource
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
        second = (self.second.vectors, self.second.vocab) if self.second is not None else ()
        for index in (self.vectors, self.sentences, *second):
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


def check_fits(gen: Path, manifest: dict[str, Any], embedder: Embedder | None
               ) -> Embedder | None:
    """Refuse a generation of another format, or built by other weights or another second
    encoder than the service's; returns the service's second encoder, if any."""
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
    return second


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
