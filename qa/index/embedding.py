"""What the encoders see of a chunk, and the build's stream of chunks waiting for vectors.

A build hands chunks over as it cuts them; every ``window`` chunks the stream embeds them
together (the texts sorted by length across documents, so a batch pads only to its
neighbours) and appends each vector, in row order, to the generation's vector files
(qa.index.rows): the first encoder's paragraph and sentence rows, and the second encoder's
(qa.index.second) when there is one. Rows reused from a previous generation go into the same
queue, so the files keep the order of the chunk store. Nothing outlives a window: a build's
memory does not grow with the corpus's vectors, which are on disk.

Sentence vectors come in one of two ways (``QA_SENTENCE_VECTORS``): "separate", every
sentence of a multi-sentence chunk encoded again as a text of its own in the same calls, or
"late", pooled from the token states of the chunk's own forward pass (qa.encoders.late), so
the first encoder sees each chunk once. The second encoder always encodes sentences as texts.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qa.encoders.base import Embedder, embed
from qa.encoders.late import Span
from qa.index.rows import RowWriter
from qa.ingest.chunking import split_sentences
from qa.types import Chunk

# Chunks per window: enough that length sorting finds neighbours, few enough that their
# texts (about 11 per CMRC paragraph with sentence vectors) and vectors are nothing to hold.
WINDOW = 1024
# Texts per first-encoder call (qa.index.build._embed_window); the ONNX backend cuts each
# call into its own batches by a token budget (up to 64 short rows).
CALL = 256

# Texts in, (n, dim) float32 unit rows out, in order (qa.index.build.EmbedFn).
EmbedTexts = Callable[[Sequence[str]], np.ndarray]
# Texts and each text's sentence spans in; each text's row, and its spans' rows, out.
EmbedSpans = Callable[[Sequence[str], Sequence[Sequence[Span]]],
                      tuple[np.ndarray, list[np.ndarray]]]


def passage_text(chunk: Chunk, title: str, mode: str) -> str:
    """What the embedder sees for a chunk: the passage, optionally after its breadcrumb."""
    if mode == "none":
        return chunk.clean_text
    crumbs = list(chunk.section)
    if mode == "title+section":
        crumbs = [title, *crumbs]
    head = " > ".join(c for c in crumbs if c)
    return f"{head}\n{chunk.clean_text}" if head else chunk.clean_text


def sentence_spans(chunk: Chunk) -> list[Span]:
    """Spans (into ``clean_text``) of the sentences of a chunk that get vectors of their own;
    a one-sentence chunk has none (its paragraph vector already is the sentence vector)."""
    spans = split_sentences(chunk.clean_text)
    return spans if len(spans) > 1 else []


def sentence_texts(chunk: Chunk) -> list[str]:
    """The texts of :func:`sentence_spans`."""
    return [chunk.clean_text[a:b] for a, b in sentence_spans(chunk)]


@dataclass
class Sinks:
    """The vector files of the generation being built; sentence files are None without
    sentence vectors, the second encoder's without a second encoder."""

    vectors: RowWriter
    sentences: RowWriter | None = None
    second: RowWriter | None = None
    second_sentences: RowWriter | None = None

    def writers(self) -> list[RowWriter]:
        return [w for w in (self.vectors, self.sentences, self.second, self.second_sentences)
                if w is not None]


@dataclass
class _Pending:
    text: str            # the passage as the first encoder sees it
    clean: str           # the passage as the second encoder sees it (no breadcrumb)
    sentences: list[str]
    spans: list[Span]    # the sentences' spans in ``text`` (late chunking only, else [])


@dataclass
class _Ready:
    """Rows copied from a previous generation, waiting for the chunks queued before them."""

    vectors: np.ndarray
    sentences: np.ndarray | None
    second: np.ndarray | None
    second_sentences: np.ndarray | None


class EmbedStream:
    """Chunks (and reused rows) in, rows appended to ``sinks`` in the order given; call
    :meth:`flush` once the last chunk is in.

    ``embed_first`` embeds the first encoder's texts (in this process, or on Ray);
    ``second`` is the second encoder, or None; ``embed_late``, when given, replaces
    ``embed_first`` and pools the sentence vectors from each chunk's own pass.
    ``progress(done, known)`` counts texts: the total grows as the build cuts documents.
    ``sentence_counts`` is each row's number of sentence rows (the generation's sentence
    offsets are its running sum)."""

    def __init__(self, embed_first: EmbedTexts, second: Embedder | None, sinks: Sinks, *,
                 batch_size: int, window: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 embed_late: EmbedSpans | None = None) -> None:
        self.embed_first, self.second, self.sinks = embed_first, second, sinks
        self.embed_late = embed_late
        self.batch_size, self.progress = batch_size, progress
        self.window = max(1, window or WINDOW)
        self.chunks = 0           # chunks embedded so far
        self.sentence_texts = 0   # sentences encoded as texts of their own (first encoder)
        self.sentences_pooled = 0  # sentence vectors pooled from their chunk's pass (late)
        self.second_texts = 0     # texts the second encoder embedded
        self.known = 0            # texts handed over so far (first encoder)
        self.done = 0
        self.seconds = 0.0        # spent in the first encoder
        self.second_seconds = 0.0  # spent in the second
        self.sentence_counts = array("q")
        self._queue: list[_Pending | _Ready] = []
        self._waiting = 0         # chunks in the queue
        self._held = 0            # reused rows in the queue, behind those chunks

    def add_chunk(self, chunk: Chunk, text: str) -> None:
        """A new chunk; ``text`` is what the first encoder sees (:func:`passage_text`)."""
        spans = sentence_spans(chunk) if self.sinks.sentences is not None else []
        sents = [chunk.clean_text[a:b] for a, b in spans]
        late: list[Span] = []
        if self.embed_late is not None:
            # A breadcrumb (embed_context) goes before the passage: the spans move past it.
            head = len(text) - len(chunk.clean_text)
            late = [(a + head, b + head) for a, b in spans]
        self._queue.append(_Pending(text, chunk.clean_text, sents, late))
        self.sentence_counts.append(max(1, len(sents)) if self.sinks.sentences is not None
                                    else 0)
        self._waiting += 1
        self.known += 1 if self.embed_late is not None else 1 + len(sents)
        if self._waiting >= self.window:
            self.flush()

    def add_rows(self, vectors: np.ndarray, sentences: np.ndarray | None,
                 counts: np.ndarray | None, second: np.ndarray | None = None,
                 second_sentences: np.ndarray | None = None) -> None:
        """Rows reused from a previous generation, with each row's number of sentence rows.
        Written at once unless chunks wait before them; held rows are bounded by a window
        (then the waiting chunks are embedded early)."""
        self.sentence_counts.extend(counts.tolist() if counts is not None
                                    else [0] * len(vectors))
        ready = _Ready(vectors, sentences, second, second_sentences)
        if not self._waiting:
            self._write_ready(ready)
            return
        self._queue.append(ready)
        self._held += len(vectors)
        if self._held >= self.window:
            self.flush()

    def flush(self) -> None:
        queue, self._queue = self._queue, []
        self._waiting = self._held = 0
        todo = [p for p in queue if isinstance(p, _Pending)]
        first = more = None
        extra = [s for p in todo for s in p.sentences]
        if todo:
            started = time.perf_counter()
            if self.embed_late is not None:
                vecs, pooled = self.embed_late([p.text for p in todo], [p.spans for p in todo])
                # The same layout as the separate path's: the chunks' rows, then every
                # sentence row in chunk order.
                first = np.concatenate([vecs, *pooled]) if extra else vecs
            else:
                first = self.embed_first([p.text for p in todo] + extra)
            self.seconds += time.perf_counter() - started
            if self.second is not None:
                started = time.perf_counter()
                more = embed(self.second, [p.clean for p in todo] + extra, "passage",
                             batch_size=self.batch_size)
                self.second_seconds += time.perf_counter() - started
                self.second_texts += len(todo) + len(extra)
        # Rows of each run of new chunks, by index into the window's vectors: a chunk's
        # own row, then its sentences' (or its own row again: a one-sentence chunk).
        rows: list[int] = []
        sents: list[int] = []
        at, extra_at = 0, len(todo)
        for item in queue:
            if isinstance(item, _Ready):
                self._write_run(first, more, rows, sents)
                rows, sents = [], []
                self._write_ready(item)
                continue
            k = len(item.sentences)
            rows.append(at)
            sents.extend(range(extra_at, extra_at + k) if k else [at])
            at, extra_at = at + 1, extra_at + k
        self._write_run(first, more, rows, sents)
        if todo:
            self.chunks += len(todo)
            if self.embed_late is not None:
                self.sentences_pooled += len(extra)
                self.done += len(todo)
            else:
                self.sentence_texts += len(extra)
                self.done += len(todo) + len(extra)
            if self.progress:
                self.progress(self.done, self.known)

    def _write_run(self, first: np.ndarray | None, more: np.ndarray | None, rows: list[int],
                   sents: list[int]) -> None:
        if not rows or first is None:
            return
        sinks = self.sinks
        sinks.vectors.append(first[rows])
        if sinks.sentences is not None:
            sinks.sentences.append(first[sents])
        if sinks.second is not None and more is not None:
            sinks.second.append(more[rows])
            if sinks.second_sentences is not None:
                sinks.second_sentences.append(more[sents])

    def _write_ready(self, ready: _Ready) -> None:
        sinks = self.sinks
        sinks.vectors.append(ready.vectors)
        for sink, rows in ((sinks.sentences, ready.sentences), (sinks.second, ready.second),
                           (sinks.second_sentences, ready.second_sentences)):
            if sink is not None and rows is not None:
                sink.append(rows)
