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
the chunker and the embedder are unchanged keep their vectors, taken only from a previous
generation that passes a full verification of its checksums; only new or changed ones are
embedded again, and removed ones are gone from the new generation. When nothing changed,
nothing is written. Old generations are removed by the next build, once no process holds
them (``qa.index.generations``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Embedder, embed
from qa.index.generations import (
    Previous,
    doc_meta_sha256,
    hub_meta_of,
    nothing_changed,
    open_previous,
    remove_unused,
)
from qa.index.hubness import hub_scores, reference_queries
from qa.index.lexical import BM25Index
from qa.index.manifest import FORMAT, current_generation, fsync_dir, write_manifest
from qa.index.second import same_encoders, second_of, vocabulary_terms, write_second
from qa.index.store import ChunkStore, write_store
from qa.index.vectors.store import VectorStore
from qa.ingest.chunking import CHUNKER_VERSION, REPORTER, chunk, split_sentences
from qa.ingest.corpus import Cache, load_corpus
from qa.ingest.readers import READERS_VERSION, Limits
from qa.ingest.tokenize import Tokenizer, mine_terms
from qa.locking import file_lock
from qa.types import Chunk, Document

LEXICAL_TOKENIZER = "nfkc+opencc-t2s+jieba-search/1"
Progress = Callable[[str, int, int], None]
# Passages in, (n, dim) float32 unit rows out, in order; the callback gets how many are done.
# The default runs the embedder in this process; qa.index.distributed.RayEmbed spreads the
# same work over a Ray cluster. Everything else in a build is shared by both.
EmbedFn = Callable[[Sequence[str], Callable[[int], None] | None], np.ndarray]


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
    second_embedded: int = 0  # passages and sentences embedded by the second encoder
    seconds: float = 0.0
    # Files that were not indexed (file name -> reason), and what the readers warned about.
    failed: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    # True when the corpus, the model and the settings are those of the live generation:
    # nothing was written and CURRENT still names the same generation.
    nothing_changed: bool = False
    # Why something was rebuilt from scratch (a previous generation that failed its checks).
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line of counts, then one line per skipped file and per warning."""
        if self.nothing_changed:
            return (f"nothing changed: {self.chunks} chunks from {len(self.unchanged)} "
                    f"documents (checked in {self.seconds:.1f}s)")
        line = (f"{self.chunks} chunks from {len(self.added) + len(self.changed) + len(self.unchanged)}"
                f" documents ({len(self.added)} new, {len(self.changed)} changed, "
                f"{len(self.removed)} removed, {len(self.unchanged)} unchanged); "
                f"embedded {self.embedded} passages and {self.sentences_embedded} of their "
                f"sentences in {self.seconds:.1f}s")
        if self.failed:
            line += f"; {len(self.failed)} file(s) skipped"
        lines = [line]
        lines += [f"  skipped {reason}" if reason.startswith(name) else
                  f"  skipped {name}: {reason}" for name, reason in sorted(self.failed.items())]
        lines += [f"  warning: {w}" for _, ws in sorted(self.warnings.items()) for w in ws]
        return "\n".join(lines)


def _reusable(prev: dict[str, Any] | None, embedder: Embedder, settings: dict[str, Any]) -> bool:
    # A change in the set of encoders (a second encoder added, removed or replaced) is a
    # change of model: every vector is made again.
    return prev is not None and prev.get("format") == FORMAT \
        and prev["model"]["fingerprint"] == embedder.fingerprint and prev["chunker"] == settings \
        and same_encoders(prev, second_of(embedder))


def _reader_cache(prev_gen: Path | None, prev: dict[str, Any] | None
                  ) -> tuple[Cache | None, ChunkStore | None]:
    """What the previous generation read from each file, if the same readers read it."""
    if prev_gen is None or not prev or prev.get("chunker", {}).get("readers") != READERS_VERSION:
        return None, None
    try:
        store = ChunkStore(prev_gen / "chunks.sqlite")
        return store.extracted, store
    except Exception:  # noqa: BLE001 - a damaged store only means every file is read again
        return None, None


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
                force: bool = False, vector_store: VectorStore | None = None,
                embed_passages: EmbedFn | None = None,
                limits: Limits | None = None) -> BuildReport:
    """Bring ``index_dir`` up to date with ``corpus_dir``; see the module docstring. Files
    that cannot be read are skipped and listed in the report's ``failed``.
    ``embed_passages`` replaces in-process embedding of the new passages (e.g. on Ray); it
    must produce what ``embedder`` would, whose fingerprint goes into the manifest."""
    started = time.perf_counter()
    # Room for the 'passage: ' prompt; count_tokens already includes <s> and </s>.
    window = max_tokens or max(64, embedder.max_tokens - 8)
    chunker = {"version": CHUNKER_VERSION, "max_tokens": window, "embed_context": embed_context,
               "sentence_vectors": sentence_vectors, "readers": READERS_VERSION}
    with file_lock(index_dir / ".lock"):
        for stale in index_dir.glob(".building-*"):
            shutil.rmtree(stale, ignore_errors=True)
        prev_gen = current_generation(index_dir)
        store_cfg = vector_store or VectorStore()
        # Vectors are reused only from a generation whose every byte checks out.
        previous = Previous() if force else open_previous(prev_gen, sentence_vectors)
        prev = previous.manifest
        cache, cache_store = _reader_cache(prev_gen, prev) if not force else (None, None)
        # Read under the lock: two builders (the service's writer, `qa index`) then see the
        # corpus in the order they write, and the later generation is never the staler one.
        try:
            corpus = load_corpus(corpus_dir, limits=limits, cache=cache)
        finally:
            if cache_store is not None:
                cache_store.close()
        docs = corpus.documents
        user_words = mine_terms(d.text for d in docs)
        reuse = prev is not None and _reusable(prev, embedder, chunker)
        prev_docs = prev["documents"] if prev and reuse else {}
        prev_store = previous.store if reuse else None
        prev_vecs, prev_sents, prev_offsets = (previous.vectors, previous.sentences,
                                                 previous.offsets)
        if reuse and prev and prev_gen and nothing_changed(prev, docs, user_words, store_cfg,
                                                           hnsw_threshold, LEXICAL_TOKENIZER):
            previous.close()
            remove_unused(index_dir, {prev_gen.name}, store_cfg)
            return BuildReport(generation=prev_gen.name, unchanged=[d.doc_id for d in docs],
                               chunks=int(prev["counts"]["chunks"]), nothing_changed=True,
                               failed=corpus.failed, warnings=corpus.warnings,
                               seconds=time.perf_counter() - started)
        tokenizer = Tokenizer(user_words)
        same_lexicon = prev is not None and \
            prev.get("lexical", {}).get("user_words") == user_words

        gen_name = f"g-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        tmp = index_dir / f".building-{gen_name}"
        tmp.mkdir()
        report = BuildReport(generation=gen_name, failed=corpus.failed,
                             warnings=corpus.warnings, notes=previous.notes)
        rows: list[tuple[int, Chunk, list[str]]] = []
        vec_parts: list[np.ndarray] = []
        sent_parts: list[np.ndarray] = []
        sent_counts: list[int] = []
        to_embed: list[tuple[int, Chunk]] = []
        origin: list[int] = []  # each row's row in the previous generation, or -1 if new
        doc_entries: dict[str, Any] = {}
        titles = {d.doc_id: d.title for d in docs}
        try:
            for doc in docs:
                old = prev_docs.get(doc.doc_id)
                if old and old["sha256"] == doc.sha256 and prev_store is not None \
                        and prev_vecs is not None:
                    report.unchanged.append(doc.doc_id)
                    kept = list(prev_store.iter_doc(doc.doc_id))
                    old_rows = [r for r, _, _ in kept]
                    origin.extend(old_rows)
                    for _, ch, toks in kept:
                        toks = toks if same_lexicon else tokenizer(ch.clean_text)
                        rows.append((len(rows), ch, toks))
                    vec_parts.append(np.asarray(prev_vecs[old_rows], dtype=np.float32))
                    if prev_offsets is not None and prev_sents is not None and old_rows:
                        # A document's rows are contiguous, and so are their sentences.
                        lo, hi = prev_offsets[old_rows[0]], prev_offsets[old_rows[-1] + 1]
                        sent_parts.append(np.asarray(prev_sents[lo:hi], dtype=np.float32))
                        sent_counts.extend(np.diff(prev_offsets[old_rows[0]:old_rows[-1] + 2]))
                else:
                    (report.changed if old else report.added).append(doc.doc_id)
                    chunks = chunk(doc, max_tokens=window, count_tokens=embedder.count_tokens)
                    vec_parts.append(np.zeros((len(chunks), embedder.dim), dtype=np.float32))
                    origin.extend([-1] * len(chunks))
                    for ch in chunks:
                        to_embed.append((len(rows), ch))
                        rows.append((len(rows), ch, tokenizer(ch.clean_text)))
                        n_sent = max(1, len(_sentence_texts(ch))) if sentence_vectors else 0
                        sent_parts.append(np.zeros((n_sent, embedder.dim), dtype=np.float32))
                        sent_counts.append(n_sent)
                doc_entries[doc.doc_id] = {"sha256": doc.sha256, "path": doc.path,
                                           "title": doc.title,
                                           "meta_sha256": doc_meta_sha256(doc)}
            report.removed = sorted(set(prev["documents"]) - set(titles)) if prev else []
            vectors = (np.concatenate(vec_parts) if vec_parts
                       else np.zeros((0, embedder.dim), np.float32))
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum(sent_counts) if sentence_vectors else 0
            sentences = (np.concatenate(sent_parts) if sent_parts
                         else np.zeros((0, embedder.dim), np.float32))
            texts = _embed_new(embedder, to_embed, titles, embed_context, vectors,
                               sentences if sentence_vectors else None, offsets, batch_size,
                               progress, embed_passages)
            report.embedded = len(to_embed)
            report.sentences_embedded = texts - len(to_embed)
            # One pass: scanning every row for each document was quadratic (2e10 steps at
            # a million chunks).
            per_doc = Counter(c.doc_id for _, c, _ in rows)
            for doc in docs:
                doc_entries[doc.doc_id]["chunks"] = per_doc[doc.doc_id]
            second = second_of(embedder)
            second_meta = bm25 = None
            if second is not None:
                bm25 = BM25Index.build([toks for _, _, toks in rows])
                second_meta = write_second(
                    tmp, second, [ch.clean_text for _, ch, _ in rows],
                    [_sentence_texts(ch) if origin[r] < 0 else [] for r, ch, _ in rows],
                    origin, prev_gen if reuse else None, offsets if sentence_vectors else None,
                    vocabulary_terms(bm25.vocab, bm25.idf), batch_size, gen_name,
                    hnsw_threshold)
                report.second_embedded = int(second_meta["embedded"])
            _write_generation(tmp, docs, rows, vectors, embedder, chunker, doc_entries,
                              tokenizer, hnsw_threshold,
                              (sentences, offsets) if sentence_vectors else None,
                              store_cfg, gen_name, corpus.extracted, second_meta, bm25)
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
            previous.close()
        # The generation just replaced stays (a server may be loading it right now), and so
        # does any other a process still holds; the next build removes them.
        remove_unused(index_dir, {gen_name} | ({prev_gen.name} if prev_gen else set()),
                      store_cfg)
    report.chunks = len(rows)
    report.seconds = time.perf_counter() - started
    return report


def _embed_new(embedder: Embedder, to_embed: list[tuple[int, Chunk]], titles: dict[str, str],
               embed_context: str, vectors: np.ndarray, sentences: np.ndarray | None,
               offsets: np.ndarray, batch_size: int, progress: Progress | None,
               embed_passages: EmbedFn | None = None) -> int:
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
    on_done = (lambda n: progress("embed", n, len(texts))) if progress else None
    done = (embed_passages(texts, on_done) if embed_passages is not None
            else embed(embedder, texts, "passage", batch_size=batch_size, progress=on_done))
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
                      gen_name: str, extracted: dict[str, Any] | None = None,
                      second: dict[str, Any] | None = None,
                      bm25: BM25Index | None = None) -> None:
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
        hub_meta = hub_meta_of(bank)
    write_store(tmp / "chunks.sqlite", docs, rows, extracted)
    bm25 = bm25 or BM25Index.build([toks for _, _, toks in rows])
    lexical_meta = store.save_lexical(bm25, tmp, gen_name)
    manifest = {
        "format": FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"id": embedder.model_id, "fingerprint": embedder.fingerprint,
                  "dim": embedder.dim, "max_tokens": embedder.max_tokens},
        "chunker": chunker,
        "vectors": index.describe(),
        "sentences": sentence_meta,
        "hubness": hub_meta,
        "second": second,
        "lexical": {**lexical_meta, "tokenizer": LEXICAL_TOKENIZER,
                    "user_words": list(tokenizer.user_words)},
        "documents": doc_entries,
        "counts": {"documents": len(docs), "chunks": len(rows)},
    }
    # The manifest goes last, with every file's checksum: a generation without one is
    # never loaded.
    write_manifest(tmp, manifest)


