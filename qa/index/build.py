"""Corpus -> chunks -> vectors + BM25 + chunk store, on disk, incremental and atomic.

Layout of ``index/``::

    CURRENT              name of the live generation (replaced atomically, last)
    g-<time>-<rand>/     one complete, self-describing generation
        manifest.json    model, weights checksum, dimension, prompts, chunker, documents
        vectors.faiss    the FAISS index          vectors.npy   the same rows, for reuse
        sentences.*      one vector per sentence of multi-sentence chunks, and the offsets
                         mapping chunk row -> its sentence rows (the dense leg's max-sim)
        chunks.sqlite    the chunk store          bm25*.{npz,npy,json}  the lexical index

A build writes a new generation beside the live one and only then switches CURRENT, so a
crash or Ctrl-C mid-build leaves the previous index fully usable. Documents whose bytes,
the chunker and the embedder are unchanged keep their vectors; only new or changed ones
are embedded again, and removed ones are gone from the new generation.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Embedder, embed
from qa.index.hubness import (
    HUB_K,
    HUB_SENTENCE_WEIGHT,
    REFERENCE_BANK,
    hub_scores,
    reference_queries,
)
from qa.index.lexical import BM25Index
from qa.index.manifest import FORMAT, current_generation, fsync_dir, read_manifest
from qa.index.store import ChunkStore, write_store
from qa.index.vectors.store import VectorStore
from qa.ingest.chunking import CHUNKER_VERSION, REPORTER, chunk_document, split_sentences
from qa.ingest.corpus import load_corpus
from qa.ingest.tokenize import Tokenizer, mine_terms
from qa.locking import file_lock
from qa.types import Chunk, Document

LEXICAL_TOKENIZER = "nfkc+opencc-t2s+jieba-search/1"
Progress = Callable[[str, int, int], None]


def passage_text(chunk: Chunk, title: str, mode: str) -> str:
    """What the embedder sees for a chunk: the passage, optionally after its breadcrumb."""
    if mode == "none":
        return chunk.clean_text
    crumbs = list(chunk.section)
    if mode == "title+section":
        crumbs = [title, *crumbs]
    head = " > ".join(c for c in crumbs if c)
    return f"{head}\n{chunk.clean_text}" if head else chunk.clean_text


@dataclass
class BuildReport:
    generation: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0
    sentences_embedded: int = 0
    seconds: float = 0.0
    # Files that could not be read (file name -> reason); everything else is indexed.
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.chunks} chunks from {len(self.added) + len(self.changed) + len(self.unchanged)}"
                f" documents ({len(self.added)} new, {len(self.changed)} changed, "
                f"{len(self.removed)} removed, {len(self.unchanged)} unchanged); "
                f"embedded {self.embedded} passages and {self.sentences_embedded} of their "
                f"sentences in {self.seconds:.1f}s"
                + (f"; {len(self.failed)} files skipped" if self.failed else ""))


def _reusable(prev: dict[str, Any] | None, embedder: Embedder, settings: dict[str, Any]) -> bool:
    return bool(prev) and prev["model"]["fingerprint"] == embedder.fingerprint \
        and prev["chunker"] == settings


def _sentence_texts(chunk: Chunk) -> list[str]:
    """The sentences of a chunk that get vectors of their own; a one-sentence chunk has none
    (its paragraph vector already is the sentence vector)."""
    spans = split_sentences(chunk.clean_text)
    if len(spans) <= 1:
        return []
    return [chunk.clean_text[a:b] for a, b in spans]


def build_index(corpus_dir: Path, index_dir: Path, embedder: Embedder, *,
                max_tokens: int | None = None, embed_context: str = "none",
                sentence_vectors: bool = True, batch_size: int = 32,
                hnsw_threshold: int = 200_000, progress: Progress | None = None,
                force: bool = False, vector_store: VectorStore | None = None) -> BuildReport:
    """Bring ``index_dir`` up to date with ``corpus_dir``; see the module docstring."""
    started = time.perf_counter()
    # Room for the 'passage: ' prompt; count_tokens already includes <s> and </s>.
    window = max_tokens or max(64, embedder.max_tokens - 8)
    chunker = {"version": CHUNKER_VERSION, "max_tokens": window, "embed_context": embed_context,
               "sentence_vectors": sentence_vectors}
    with file_lock(index_dir / ".lock"):
        # Read under the lock: two builders (the service's writer, `qa index`) then see the
        # corpus in the order they write, and the later generation is never the staler one.
        docs, failed = load_corpus(corpus_dir)
        for stale in index_dir.glob(".building-*"):
            shutil.rmtree(stale, ignore_errors=True)
        prev_gen = current_generation(index_dir)
        prev = read_manifest(prev_gen) if prev_gen else None
        reuse = not force and prev_gen is not None and _reusable(prev, embedder, chunker)
        prev_docs = prev["documents"] if prev and reuse else {}
        prev_store = ChunkStore(prev_gen / "chunks.sqlite") if reuse and prev_gen else None
        prev_vecs = np.load(prev_gen / "vectors.npy", mmap_mode="r") if reuse and prev_gen else None
        prev_sents = prev_offsets = None
        if reuse and prev_gen and sentence_vectors:
            prev_sents = np.load(prev_gen / "sentences.npy", mmap_mode="r")
            prev_offsets = np.load(prev_gen / "sentence_offsets.npy")

        user_words = mine_terms(d.text for d in docs)
        tokenizer = Tokenizer(user_words)
        same_lexicon = bool(prev) and prev.get("lexical", {}).get("user_words") == user_words

        gen_name = f"g-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        tmp = index_dir / f".building-{gen_name}"
        tmp.mkdir()
        report = BuildReport(generation=gen_name, failed=failed)
        rows: list[tuple[int, Chunk, list[str]]] = []
        vec_parts: list[np.ndarray] = []
        sent_parts: list[np.ndarray] = []
        sent_counts: list[int] = []
        to_embed: list[tuple[int, Chunk]] = []
        doc_entries: dict[str, Any] = {}
        titles = {d.doc_id: d.title for d in docs}
        try:
            for doc in docs:
                old = prev_docs.get(doc.doc_id)
                if old and old["sha256"] == doc.sha256 and prev_store is not None:
                    report.unchanged.append(doc.doc_id)
                    kept = list(prev_store.iter_doc(doc.doc_id))
                    old_rows = [r for r, _, _ in kept]
                    for _, ch, toks in kept:
                        toks = toks if same_lexicon else tokenizer(ch.clean_text)
                        rows.append((len(rows), ch, toks))
                    vec_parts.append(np.asarray(prev_vecs[old_rows], dtype=np.float32))
                    if prev_offsets is not None and old_rows:
                        # A document's rows are contiguous, and so are their sentences.
                        lo, hi = prev_offsets[old_rows[0]], prev_offsets[old_rows[-1] + 1]
                        sent_parts.append(np.asarray(prev_sents[lo:hi], dtype=np.float32))
                        sent_counts.extend(np.diff(prev_offsets[old_rows[0]:old_rows[-1] + 2]))
                else:
                    (report.changed if old else report.added).append(doc.doc_id)
                    chunks = chunk_document(doc.doc_id, doc.text, markdown=None,
                                            max_tokens=window, count_tokens=embedder.count_tokens)
                    vec_parts.append(np.zeros((len(chunks), embedder.dim), dtype=np.float32))
                    for ch in chunks:
                        to_embed.append((len(rows), ch))
                        rows.append((len(rows), ch, tokenizer(ch.clean_text)))
                        n_sent = max(1, len(_sentence_texts(ch))) if sentence_vectors else 0
                        sent_parts.append(np.zeros((n_sent, embedder.dim), dtype=np.float32))
                        sent_counts.append(n_sent)
                doc_entries[doc.doc_id] = {"sha256": doc.sha256, "path": doc.path,
                                           "title": doc.title}
            report.removed = sorted(set(prev["documents"]) - set(titles)) if prev else []
            vectors = (np.concatenate(vec_parts) if vec_parts
                       else np.zeros((0, embedder.dim), np.float32))
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum(sent_counts) if sentence_vectors else 0
            sentences = (np.concatenate(sent_parts) if sent_parts
                         else np.zeros((0, embedder.dim), np.float32))
            texts = _embed_new(embedder, to_embed, titles, embed_context, vectors,
                               sentences if sentence_vectors else None, offsets, batch_size,
                               progress)
            report.embedded = len(to_embed)
            report.sentences_embedded = texts - len(to_embed)
            for doc in docs:
                doc_entries[doc.doc_id]["chunks"] = sum(1 for _, c, _ in rows
                                                        if c.doc_id == doc.doc_id)
            _write_generation(tmp, docs, rows, vectors, embedder, chunker, doc_entries,
                              tokenizer, hnsw_threshold,
                              (sentences, offsets) if sentence_vectors else None,
                              vector_store or VectorStore(), gen_name)
            final = index_dir / gen_name
            os.replace(tmp, final)
            pointer_tmp = index_dir / "CURRENT.tmp"
            pointer_tmp.write_text(gen_name, encoding="utf-8")
            with open(pointer_tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(pointer_tmp, index_dir / "CURRENT")
            fsync_dir(index_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if prev_store is not None:
                prev_store.close()
        for old_gen in index_dir.glob("g-*"):
            if old_gen.name != gen_name:
                (vector_store or VectorStore()).drop(old_gen)
                shutil.rmtree(old_gen, ignore_errors=True)
    report.chunks = len(rows)
    report.seconds = time.perf_counter() - started
    return report


def _embed_new(embedder: Embedder, to_embed: list[tuple[int, Chunk]], titles: dict[str, str],
               embed_context: str, vectors: np.ndarray, sentences: np.ndarray | None,
               offsets: np.ndarray, batch_size: int, progress: Progress | None) -> int:
    """Embed new chunks (and their sentences) in one stream of batches; fill the arrays."""
    texts = [passage_text(ch, titles[ch.doc_id], embed_context) for _, ch in to_embed]
    sent_slots: list[int] = []
    if sentences is not None:
        for row, ch in to_embed:
            extra = _sentence_texts(ch)
            texts.extend(extra)
            sent_slots.extend(range(offsets[row], offsets[row] + len(extra)))
    if not texts:
        return 0
    done = embed(embedder, texts, "passage", batch_size=batch_size,
                 progress=(lambda n: progress("embed", n, len(texts))) if progress else None)
    n = len(to_embed)
    vectors[[r for r, _ in to_embed]] = done[:n]
    if sentences is not None:
        for row, _ in to_embed:
            if offsets[row + 1] - offsets[row] == 1:
                sentences[offsets[row]] = vectors[row]
        sentences[sent_slots] = done[n:]
    return len(texts)


def _write_generation(tmp: Path, docs: list[Document], rows: list[tuple[int, Chunk, list[str]]],
                      vectors: np.ndarray, embedder: Embedder, chunker: dict[str, Any],
                      doc_entries: dict[str, Any], tokenizer: Tokenizer, hnsw_threshold: int,
                      sentences: tuple[np.ndarray, np.ndarray] | None, store: VectorStore,
                      gen_name: str) -> None:
    np.save(tmp / "vectors.npy", vectors)
    # Reporter questions in a transcript are context for the answer that follows, not
    # answers: search ranks them below answers (qa.retrieve.search.FusionParams.question_penalty).
    np.save(tmp / "question_rows.npy",
            np.array([c.speaker == REPORTER for _, c, _ in rows], dtype=bool))
    index = store.create(embedder.dim, vectors, tmp, "vectors", gen_name, hnsw_threshold)
    sentence_meta = None
    if sentences is not None:
        sent_vecs, offsets = sentences
        np.save(tmp / "sentences.npy", sent_vecs)
        np.save(tmp / "sentence_offsets.npy", offsets)
        sent_index = store.create(embedder.dim, sent_vecs, tmp, "sentences", gen_name,
                                  hnsw_threshold)
        sentence_meta = {**sent_index.describe(), "count": int(len(sent_vecs))}
    hub_meta = None
    bank = reference_queries()
    if bank and len(vectors):
        hub = hub_scores(embedder.embed_batch(bank, "query"), vectors, sentences)
        np.save(tmp / "hub_en.npy", hub)
        hub_meta = {"bank": REFERENCE_BANK.name, "bank_size": len(bank), "k": HUB_K,
                    "sentence_weight": HUB_SENTENCE_WEIGHT}
    write_store(tmp / "chunks.sqlite", docs, rows)
    bm25 = BM25Index.build([toks for _, _, toks in rows])
    bm25.save(tmp)
    manifest = {
        "format": FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"id": embedder.model_id, "fingerprint": embedder.fingerprint,
                  "dim": embedder.dim, "max_tokens": embedder.max_tokens},
        "chunker": chunker,
        "vectors": index.describe(),
        "sentences": sentence_meta,
        "hubness": hub_meta,
        "lexical": {"engine": "bm25", "k1": bm25.k1, "b": bm25.b,
                    "tokenizer": LEXICAL_TOKENIZER, "user_words": list(tokenizer.user_words)},
        "documents": doc_entries,
        "counts": {"documents": len(docs), "chunks": len(rows)},
    }
    # The manifest goes last: a generation without one is never loaded.
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2),
                                       encoding="utf-8")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


