"""What a build takes from the previous generation, and which old generations it removes.

A build reuses vectors only from a generation that passes a full verification (every byte
against the manifest's checksums): a damaged one is rebuilt from scratch, with a note that
says why, instead of copying its damage into every later generation. Old generations are
removed by the next build, except the one just replaced (a server may be about to reload
from it) and any that a process still holds (a shared lock on its manifest, taken by
``open_index``); their Milvus collections go with them, never before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import QAError
from qa.index.hubness import HUB_K, HUB_SENTENCE_WEIGHT, REFERENCE_BANK, reference_queries
from qa.index.integrity import verify_files
from qa.index.loaded import reading
from qa.index.manifest import FORMAT, read_manifest
from qa.index.rows import Rows
from qa.index.store import ChunkStore
from qa.index.vectors.store import VectorStore
from qa.locking import try_exclusive
from qa.types import Document

log = logging.getLogger("qa.index")


def doc_meta_sha256(doc: Document) -> str:
    """A checksum of everything a document record holds but its text (whose bytes have their
    own): a changed title or date in a sidecar is a change, though the text is not."""
    fields = {k: v for k, v in asdict(doc).items() if k not in ("text", "sha256")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
                          .encode("utf-8")).hexdigest()


def hub_meta_of(bank: list[str]) -> dict[str, Any]:
    return {"bank": REFERENCE_BANK.name, "bank_size": len(bank), "k": HUB_K,
            "sentence_weight": HUB_SENTENCE_WEIGHT}


def nothing_changed(prev: dict[str, Any], docs: list[Document], user_words: list[str],
                    store: VectorStore, hnsw_threshold: int, tokenizer: str) -> bool:
    """Whether the previous generation is what this build would write (model and chunker
    are compared by the caller): the same documents, bytes and metadata, lexicon and
    tokenizer, vector engine and index kind, hubness bank."""
    old, n = prev["documents"], int(prev["counts"]["chunks"])
    if prev.get("format") != FORMAT or set(old) != {d.doc_id for d in docs} or any(
            old[d.doc_id].get("sha256") != d.sha256
            or old[d.doc_id].get("meta_sha256") != doc_meta_sha256(d) for d in docs):
        return False
    lexical, vectors = prev.get("lexical", {}), prev.get("vectors") or {}
    if (lexical.get("user_words") != user_words or lexical.get("tokenizer") != tokenizer
            or lexical.get("engine", "bm25") != store.lexical_engine):
        return False
    if vectors.get("engine", "faiss") != store.backend or (
            store.backend == "faiss"
            and vectors.get("kind") != ("hnsw" if n >= hnsw_threshold else "flat")) or (
            store.backend == "milvus" and vectors.get("uri") != store.uri):
        return False
    bank = reference_queries()
    return prev.get("hubness") == (hub_meta_of(bank) if bank and n else None)


@dataclass
class Previous:
    """The previous generation, verified and opened for reuse (or why it cannot be)."""

    path: Path | None = None
    manifest: dict[str, Any] | None = None
    store: ChunkStore | None = None
    vectors: Rows | None = None      # read by document, never mapped whole
    sentences: Rows | None = None
    offsets: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


def open_previous(gen: Path | None, sentence_vectors: bool) -> Previous:
    """The previous generation if every byte of it checks out, else an empty Previous with a
    note: the build then embeds everything again."""
    if gen is None:
        return Previous()
    prev = Previous(gen)
    try:
        manifest = read_manifest(gen)
        if manifest.get("files") is None:
            return Previous(notes=[f"the previous generation {gen.name} records no checksums; "
                                   "rebuilt from scratch"])
        verify_files(gen, manifest, full=True)
        prev.manifest = manifest
        with reading(gen, "chunks.sqlite"):
            prev.store = ChunkStore(gen / "chunks.sqlite")
        with reading(gen, "vectors.npy"):
            prev.vectors = Rows(gen / "vectors.npy")
        if sentence_vectors and manifest.get("sentences"):
            with reading(gen, "sentences.npy"):
                prev.sentences = Rows(gen / "sentences.npy")
            with reading(gen, "sentence_offsets.npy"):
                prev.offsets = np.load(gen / "sentence_offsets.npy")
        return prev
    except QAError as exc:
        log.warning("not reusing %s: %s", gen, exc.message)
        prev.close()
        return Previous(notes=[f"the previous generation {gen.name} cannot be trusted "
                               f"({exc.message}); rebuilt from scratch"])


def remove_unused(index_dir: Path, keep: set[str], store: VectorStore) -> list[str]:
    """Delete the generations not in ``keep`` that no process holds; returns their names.
    A generation still held stays for a later build to remove."""
    removed = []
    for gen in sorted(index_dir.glob("g-*")):
        if gen.name in keep or not gen.is_dir():
            continue
        with try_exclusive(gen / "manifest.json") as free:
            if not free:
                log.info("keeping %s: a process still reads it", gen.name)
                continue
            if not _published(store, gen.name):
                store.drop(gen)
            shutil.rmtree(gen, ignore_errors=True)
            removed.append(gen.name)
    return removed


def _published(store: VectorStore, gen: str) -> bool:
    """A generation published whole to Milvus: its collections are retired by the
    registry's times (qa.index.milvus_registry.retire), not with its folder."""
    if not store.published:
        return False
    from qa.index.milvus_registry import is_registered

    try:
        return is_registered(store, gen)
    except Exception:  # noqa: BLE001 - Milvus unreachable: leave the collections alone
        return True
