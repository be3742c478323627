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
crash or Ctrl-C mid-build leaves the previous index fully usable. It streams: each chunk
goes to the chunk store, the BM25 postings and the encoders' window (qa.index.embedding)
as it is cut, each window's vectors are appended to the generation's vector files
(qa.index.rows), and the vector indexes and hubness are written from those files a block at
a time; the corpus's text is read whole (the lexicon is mined from all of it) and each
document's is dropped once it is cut (the store keeps it). What grows in memory with the
corpus beyond that is the BM25 postings and a few bytes per chunk. Documents whose bytes,
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
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Embedder, embed, embed_spans
from qa.errors import InvalidRequest
from qa.index import milvus_generation, milvus_registry
from qa.index.embedding import CALL, EmbedStream, Sinks, passage_text
from qa.index.generations import (
    Previous,
    doc_meta_sha256,
    hub_meta_of,
    nothing_changed,
    open_previous,
    remove_unused,
)
from qa.index.hubness import hub_scores, reference_queries
from qa.index.lexical import BM25Builder, BM25Index
from qa.index.manifest import FORMAT, current_generation, fsync_dir, write_manifest
from qa.index.rows import Rows, RowWriter
from qa.index.second import (
    open_previous_second,
    same_encoders,
    second_of,
    vocabulary_terms,
    write_second,
)
from qa.index.store import ChunkStore, StoreWriter
from qa.index.vectors.store import VectorStore
from qa.ingest.chunking import CHUNKER_VERSION, REPORTER, chunk
from qa.ingest.corpus import Cache, load_corpus
from qa.ingest.readers import READERS_VERSION, Limits
from qa.ingest.tokenize import Tokenizer, mine_terms
from qa.locking import file_lock
from qa.types import Document

__all__ = ["BuildReport", "EmbedFn", "Progress", "build_index", "passage_text"]

# How sentence vectors are made (QA_SENTENCE_VECTORS; qa.index.embedding): "separate" (each
# sentence encoded as a text of its own: the default, see docs/PERFORMANCE.md for why),
# "late" (pooled from the chunk's own forward pass) or "none".
SENTENCE_MODES = ("separate", "late", "none")
DEFAULT_SENTENCE_VECTORS = "separate"

LEXICAL_TOKENIZER = "nfkc+opencc-t2s+jieba-search/1"
Progress = Callable[[str, int, int], None]
# Passages in, (n, dim) float32 unit rows out, in order; the callback gets how many are done.
# The default runs the embedder in this process; qa.index.distributed.RayEmbed spreads the
# same work over a Ray cluster. Everything else in a build is shared by both.
EmbedFn = Callable[[Sequence[str], Callable[[int], None] | None], np.ndarray]


class _Clock:
    """Wall time per named stage, lap by lap."""

    def __init__(self, into: dict[str, float]) -> None:
        self.stages, self._t = into, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(self.stages.get(name, 0.0) + now - self._t, 3)
        self._t = now


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
    sentences_pooled: int = 0  # sentence vectors pooled from their chunk's pass (late)
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
    # Seconds per stage: "read" (the corpus), "chunk+store" (cutting, tokenising, the chunk
    # store and BM25 postings as the build streams), "embed" and "embed-second" (inside the
    # encoders), then "vectors", "sentences", "hubness", "second" (the second encoder's
    # files, hubness and vocabulary), "store+bm25" and "files" (manifest, fsync, switch).
    # What the build spends beside the encoders (scripts/profile_build.py, qa bench).
    stages: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line of counts, then one line per skipped file and per warning."""
        if self.nothing_changed:
            return (f"nothing changed: {self.chunks} chunks from {len(self.unchanged)} "
                    f"documents (checked in {self.seconds:.1f}s)")
        line = (f"{self.chunks} chunks from {len(self.added) + len(self.changed) + len(self.unchanged)}"
                f" documents ({len(self.added)} new, {len(self.changed)} changed, "
                f"{len(self.removed)} removed, {len(self.unchanged)} unchanged); "
                f"embedded {self.embedded} passages and {self.sentences_embedded} of their "
                f"sentences" + (f" (and pooled {self.sentences_pooled} sentence vectors from "
                                "them)" if self.sentences_pooled else "")
                + f" in {self.seconds:.1f}s")
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


def build_index(corpus_dir: Path, index_dir: Path, embedder: Embedder, *,
                max_tokens: int | None = None, embed_context: str = "none",
                sentence_vectors: bool | str = True, batch_size: int = 32,
                hnsw_threshold: int = 200_000, progress: Progress | None = None,
                force: bool = False, vector_store: VectorStore | None = None,
                embed_passages: EmbedFn | None = None,
                limits: Limits | None = None) -> BuildReport:
    """Bring ``index_dir`` up to date with ``corpus_dir``; see the module docstring. Files
    that cannot be read are skipped and listed in the report's ``failed``.
    ``embed_passages`` replaces in-process embedding of the new passages (e.g. on Ray); it
    must produce what ``embedder`` would, whose fingerprint goes into the manifest.
    ``sentence_vectors``: one of :data:`SENTENCE_MODES` (True is "separate", False "none")."""
    mode = _sentence_mode(sentence_vectors)
    if mode == "late" and embed_passages is not None:
        raise InvalidRequest("QA_SENTENCE_VECTORS=late pools sentence vectors in this "
                             "process; it is not available with Ray embedding (QA_RAY_ADDRESS)")
    sentence_vectors = mode != "none"
    started = time.perf_counter()
    stages: dict[str, float] = {}
    clock = _Clock(stages)
    # Room for the 'passage: ' prompt; count_tokens already includes <s> and </s>.
    window = max_tokens or max(64, embedder.max_tokens - 8)
    chunker: dict[str, Any] = {"version": CHUNKER_VERSION, "max_tokens": window,
                               "embed_context": embed_context,
                               "sentence_vectors": sentence_vectors, "readers": READERS_VERSION}
    if mode == "late":
        # Only when late: a separate or sentence-less index keeps the manifest it had, and
        # switching modes changes the chunker, so every vector is made again.
        chunker["sentence_pooling"] = "late"
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
                                                           hnsw_threshold, LEXICAL_TOKENIZER) \
                and (not store_cfg.published or milvus_registry.current(store_cfg) == prev_gen.name):
            previous.close()
            remove_unused(index_dir, {prev_gen.name}, store_cfg)
            if store_cfg.published:
                milvus_registry.retire(store_cfg)
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
        switched = False
        if store_cfg.published:
            # Before any collection of it exists, so that a crash leaves nothing unknown.
            milvus_registry.register(store_cfg, gen_name)
        report = BuildReport(generation=gen_name, failed=corpus.failed,
                             warnings=corpus.warnings, notes=previous.notes, stages=stages)
        clock.lap("read")
        second = second_of(embedder)
        second_old = open_previous_second(prev_gen if reuse else None, sentence_vectors) \
            if second is not None else None
        if second is not None and reuse and second_old is None:
            # Nothing to copy the second encoder's vectors from: embed every document again.
            prev_docs, prev_store = {}, None
        dim2 = second.dim if second is not None else 0
        # Streamed: each document's chunks go to the store, the BM25 postings and the
        # encoders' window as they are cut, and the window's vectors to the generation's
        # files; what grows in memory is the BM25 postings and a few bytes per chunk.
        sinks = Sinks(RowWriter(tmp / "vectors.npy", embedder.dim),
                      RowWriter(tmp / "sentences.npy", embedder.dim) if sentence_vectors
                      else None,
                      RowWriter(tmp / "use_vectors.npy", dim2) if second is not None else None,
                      RowWriter(tmp / "use_sentences.npy", dim2)
                      if second is not None and sentence_vectors else None)
        writer = StoreWriter(tmp / "chunks.sqlite")
        lexicon = BM25Builder()
        questions = array("b")
        doc_entries: dict[str, Any] = {}
        reused_second = 0

        def embed_first(texts: Sequence[str]) -> np.ndarray:
            return _embed_window(embedder, texts, batch_size, embed_passages)

        def embed_late(texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
            return embed_spans(embedder, texts, spans, "passage", max(batch_size, CALL))

        stream = EmbedStream(embed_first, second, sinks, batch_size=batch_size,
                             progress=(lambda done, known: progress("embed", done, known))
                             if progress else None,
                             embed_late=embed_late if mode == "late" else None)
        try:
            writer.add_documents(docs, corpus.extracted)
            # The texts are in the store now: each is dropped once its document is cut, so
            # the corpus's text is not held beside the build's index structures.
            corpus.extracted.clear()
            for at, doc in enumerate(docs):
                docs[at] = replace(doc, text="")
                old = prev_docs.get(doc.doc_id)
                first = len(questions)
                if old and old["sha256"] == doc.sha256 and prev_store is not None \
                        and prev_vecs is not None:
                    report.unchanged.append(doc.doc_id)
                    kept = list(prev_store.iter_doc(doc.doc_id))
                    old_rows = [r for r, _, _ in kept]
                    rows = [(first + i, ch, toks if same_lexicon else tokenizer(ch.clean_text))
                            for i, (_, ch, toks) in enumerate(kept)]
                    if old_rows:
                        stream.add_rows(prev_vecs[old_rows],
                                        *_reused_sentences(prev_sents, prev_offsets, old_rows),
                                        *_reused_second(second_old, old_rows))
                        if second_old is not None:
                            reused_second += len(old_rows)
                else:
                    (report.changed if old else report.added).append(doc.doc_id)
                    chunks = chunk(doc, max_tokens=window, count_tokens=embedder.count_tokens)
                    rows = [(first + i, ch, tokenizer(ch.clean_text))
                            for i, ch in enumerate(chunks)]
                    for ch in chunks:
                        stream.add_chunk(ch, passage_text(ch, doc.title, embed_context))
                writer.add_chunks(rows)
                for _, ch, toks in rows:
                    lexicon.add(toks)
                    questions.append(ch.speaker == REPORTER)
                doc_entries[doc.doc_id] = {"sha256": doc.sha256, "path": doc.path,
                                           "title": doc.title, "chunks": len(rows),
                                           "meta_sha256": doc_meta_sha256(doc)}
            stream.flush()
            writer.close()
            stages["embed"] = round(stream.seconds, 3)
            stages["embed-second"] = round(stream.second_seconds, 3)
            clock.lap("chunk+store")
            stages["chunk+store"] = round(stages["chunk+store"] - stream.seconds
                                          - stream.second_seconds, 3)
            report.removed = sorted(set(prev["documents"]) - set(doc_entries)) if prev else []
            report.embedded = stream.chunks
            report.sentences_embedded = stream.sentence_texts
            report.sentences_pooled = stream.sentences_pooled
            n = len(questions)
            offsets = np.zeros(n + 1, dtype=np.int64)
            if sentence_vectors:
                np.cumsum(np.frombuffer(stream.sentence_counts, dtype=np.int64), out=offsets[1:])
            vectors = sinks.vectors.close()
            sentences = sinks.sentences.close() if sinks.sentences is not None else None
            bm25 = lexicon.finish()
            del lexicon
            clock.lap("store+bm25")
            second_meta = None
            if second is not None and sinks.second is not None:
                second_meta = write_second(
                    tmp, second, sinks.second.close(),
                    sinks.second_sentences.close() if sinks.second_sentences is not None
                    else None,
                    offsets if sentence_vectors else None, stream.second_texts,
                    second_old if reuse else None, vocabulary_terms(bm25.vocab, bm25.idf),
                    batch_size, gen_name, hnsw_threshold)
                report.second_embedded = stream.second_texts
                clock.lap("second")
            _write_generation(tmp, docs, np.frombuffer(questions, dtype=np.int8).astype(bool),
                              vectors, embedder, chunker, doc_entries, tokenizer,
                              hnsw_threshold, (sentences, offsets) if sentences is not None
                              else None,
                              store_cfg, gen_name, second_meta, bm25, clock)
            final = index_dir / gen_name
            if store_cfg.published:
                # Everything a replica reads goes to Milvus, checked by opening it there.
                milvus_generation.publish(tmp, gen_name, store_cfg, embedder)
                clock.lap("publish")
            os.replace(tmp, final)
            if store_cfg.published:
                milvus_registry.switch(store_cfg, gen_name)
                switched = True
            pointer_tmp = index_dir / "CURRENT.tmp"
            pointer_tmp.write_text(gen_name, encoding="utf-8")
            with open(pointer_tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(pointer_tmp, index_dir / "CURRENT")
            fsync_dir(index_dir)
            clock.lap("files")
        except BaseException:
            writer.close(commit=False)
            for sink in sinks.writers():
                sink.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            if store_cfg.published and not switched:
                milvus_registry.discard(store_cfg, gen_name)
            raise
        finally:
            previous.close()
        # The generation just replaced stays (a server may be loading it right now), and so
        # does any other a process still holds; the next build removes them.
        remove_unused(index_dir, {gen_name} | ({prev_gen.name} if prev_gen else set()),
                      store_cfg)
        if store_cfg.published:
            milvus_registry.retire(store_cfg)
    report.chunks = len(questions)
    report.seconds = time.perf_counter() - started
    return report


def _sentence_mode(value: bool | str) -> str:
    if value is True or value is False:
        return "separate" if value else "none"
    if value not in SENTENCE_MODES:
        raise InvalidRequest(f"unknown sentence-vector mode {value!r}; use one of "
                             + ", ".join(SENTENCE_MODES))
    return str(value)


def _embed_window(embedder: Embedder, texts: Sequence[str], batch_size: int,
                  embed_passages: EmbedFn | None) -> np.ndarray:
    """One window of the first encoder's texts, in this process or through the hook."""
    if embed_passages is not None:
        return embed_passages(texts, None)
    # At least CALL texts per encoder call (sorted by length by ``embed``); the ONNX
    # backend cuts them into its own token-budget batches. Fewer, larger calls; the
    # encoder's CPU time was the same as with 32 (scripts/profile_build.py --cpu: 49.3
    # against 49.1 s in onnxruntime for 60 CMRC paragraphs).
    return embed(embedder, texts, "passage", batch_size=max(batch_size, CALL))


def _reused_sentences(sents: Rows | None, offsets: np.ndarray | None, rows: list[int]
                      ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A reused document's sentence rows and each chunk's count of them (its rows are
    contiguous in the previous generation, and so are their sentences)."""
    if sents is None or offsets is None:
        return None, None
    lo, hi = rows[0], rows[-1] + 1
    return sents[int(offsets[lo]):int(offsets[hi])], np.diff(offsets[lo:hi + 1])


def _reused_second(old: dict[str, Any] | None, rows: list[int]
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The second encoder's rows of a reused document, and its sentence rows."""
    if old is None:
        return None, None
    sents = None
    if "offsets" in old:
        offsets = old["offsets"]
        sents = old["sentences"][int(offsets[rows[0]]):int(offsets[rows[-1] + 1])]
    return old["vectors"][rows], sents


def _write_generation(tmp: Path, docs: list[Document], questions: np.ndarray,
                      vectors: Rows, embedder: Embedder, chunker: dict[str, Any],
                      doc_entries: dict[str, Any], tokenizer: Tokenizer, hnsw_threshold: int,
                      sentences: tuple[Rows, np.ndarray] | None, store: VectorStore,
                      gen_name: str, second: dict[str, Any] | None, bm25: BM25Index,
                      clock: _Clock) -> None:
    """Everything but the chunk store and the vector files (written as the build went):
    the vector indexes, from those files, then hubness, BM25 and the manifest, last."""
    # Reporter questions in a transcript are context for the answer that follows, not
    # answers: search ranks them below answers (qa.retrieve.search.FusionParams.question_penalty).
    np.save(tmp / "question_rows.npy", questions)
    vectors_meta = store.write(embedder.dim, vectors, tmp, "vectors", gen_name, hnsw_threshold)
    clock.lap("vectors")
    sentence_meta = None
    if sentences is not None:
        sent_vecs, offsets = sentences
        np.save(tmp / "sentence_offsets.npy", offsets)
        sentence_meta = {**store.write(embedder.dim, sent_vecs, tmp, "sentences", gen_name,
                                       hnsw_threshold),
                         "count": int(len(sent_vecs))}
        clock.lap("sentences")
    hub_meta = None
    bank = reference_queries()
    if bank and len(vectors):
        hub = hub_scores(embedder.embed_batch(bank, "query"), vectors, sentences)
        np.save(tmp / "hub_en.npy", hub)
        hub_meta = hub_meta_of(bank)
    clock.lap("hubness")
    lexical_meta = store.save_lexical(bm25, tmp, gen_name)
    clock.lap("store+bm25")
    manifest = {
        "format": FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"id": embedder.model_id, "fingerprint": embedder.fingerprint,
                  "dim": embedder.dim, "max_tokens": embedder.max_tokens},
        "chunker": chunker,
        "vectors": vectors_meta,
        "sentences": sentence_meta,
        "hubness": hub_meta,
        "second": second,
        "lexical": {**lexical_meta, "tokenizer": LEXICAL_TOKENIZER,
                    "user_words": list(tokenizer.user_words)},
        "documents": doc_entries,
        "counts": {"documents": len(docs), "chunks": int(len(questions))},
    }
    # The manifest goes last, with every file's checksum: a generation without one is
    # never loaded.
    write_manifest(tmp, manifest)
    clock.lap("files")


