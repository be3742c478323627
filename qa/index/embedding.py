"""What the encoders see of a chunk, and the build's stream of chunks waiting for vectors.

A build hands chunks over as it cuts them; every ``window`` chunks the stream embeds them
together (the texts sorted by length across documents, so a batch pads only to its
neighbours) and writes each vector into the array the build gave for it: the first
encoder's paragraph and sentence rows, and the second encoder's (qa.index.second) when
there is one. Nothing but the vectors outlives a window, so a build's memory does not grow
with the corpus beyond them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qa.encoders.base import Embedder, embed
from qa.ingest.chunking import split_sentences
from qa.types import Chunk

# Chunks per window: enough that length sorting finds neighbours, few enough that their
# texts (about 11 per CMRC paragraph with sentence vectors) are nothing to hold.
WINDOW = 1024
# Texts per first-encoder call (qa.index.build._embed_window); the ONNX backend cuts each
# call into its own batches by a token budget (up to 64 short rows).
CALL = 256

# Texts in, (n, dim) float32 unit rows out, in order (qa.index.build.EmbedFn).
EmbedTexts = Callable[[Sequence[str]], np.ndarray]


def passage_text(chunk: Chunk, title: str, mode: str) -> str:
    """What the embedder sees for a chunk: the passage, optionally after its breadcrumb."""
    if mode == "none":
        return chunk.clean_text
    crumbs = list(chunk.section)
    if mode == "title+section":
        crumbs = [title, *crumbs]
    head = " > ".join(c for c in crumbs if c)
    return f"{head}\n{chunk.clean_text}" if head else chunk.clean_text


def sentence_texts(chunk: Chunk) -> list[str]:
    """The sentences of a chunk that get vectors of their own; a one-sentence chunk has none
    (its paragraph vector already is the sentence vector)."""
    spans = split_sentences(chunk.clean_text)
    if len(spans) <= 1:
        return []
    return [chunk.clean_text[a:b] for a, b in spans]


@dataclass
class _Slots:
    """Where one chunk's vectors go: (dim,) row views and (k, dim) sentence blocks."""

    vector: np.ndarray
    sentences: np.ndarray | None
    second: np.ndarray | None
    second_sentences: np.ndarray | None


@dataclass
class _Pending:
    text: str            # the passage as the first encoder sees it
    clean: str           # the passage as the second encoder sees it (no breadcrumb)
    sentences: list[str]
    slots: _Slots


class EmbedStream:
    """Chunks in, vectors written in place; call :meth:`flush` once the last chunk is in.

    ``embed_first`` embeds the first encoder's texts (in this process, or on Ray);
    ``second`` is the second encoder, or None. ``progress(done, known)`` counts texts: the
    total grows as the build cuts documents."""

    def __init__(self, embed_first: EmbedTexts, second: Embedder | None, *, batch_size: int,
                 window: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.embed_first, self.second = embed_first, second
        self.batch_size, self.progress = batch_size, progress
        self.window = max(1, window or WINDOW)
        self.chunks = 0           # chunks embedded so far
        self.sentence_texts = 0   # sentences encoded as texts of their own (first encoder)
        self.second_texts = 0     # texts the second encoder embedded
        self.known = 0            # texts handed over so far (first encoder)
        self.done = 0
        self.seconds = 0.0        # spent in the first encoder
        self.second_seconds = 0.0  # spent in the second
        self._pending: list[_Pending] = []

    def add(self, chunk: Chunk, text: str, slots: _Slots) -> None:
        sents = sentence_texts(chunk) if slots.sentences is not None else []
        self._pending.append(_Pending(text, chunk.clean_text, sents, slots))
        self.known += 1 + len(sents)
        if len(self._pending) >= self.window:
            self.flush()

    @staticmethod
    def slots(vector: np.ndarray, sentences: np.ndarray | None, second: np.ndarray | None = None,
              second_sentences: np.ndarray | None = None) -> _Slots:
        return _Slots(vector, sentences, second, second_sentences)

    def flush(self) -> None:
        todo, self._pending = self._pending, []
        if not todo:
            return
        extra = [s for p in todo for s in p.sentences]
        started = time.perf_counter()
        done = self.embed_first([p.text for p in todo] + extra)
        self.seconds += time.perf_counter() - started
        _fill(todo, done, first=True)
        if self.second is not None:
            started = time.perf_counter()
            more = embed(self.second, [p.clean for p in todo] + extra, "passage",
                         batch_size=self.batch_size)
            self.second_seconds += time.perf_counter() - started
            _fill(todo, more, first=False)
            self.second_texts += len(todo) + len(extra)
        self.chunks += len(todo)
        self.sentence_texts += len(extra)
        self.done += len(todo) + len(extra)
        if self.progress:
            self.progress(self.done, self.known)


def _fill(todo: list[_Pending], done: np.ndarray, first: bool) -> None:
    at = len(todo)
    for p, v in zip(todo, done, strict=False):
        vec = p.slots.vector if first else p.slots.second
        sents = p.slots.sentences if first else p.slots.second_sentences
        if vec is not None:
            vec[:] = v
        k = len(p.sentences)
        if sents is not None:
            sents[:] = done[at:at + k] if k else v
        at += k
