"""The Embedder interface, batch embedding and the hashing fake.

Every backend returns L2-normalised float32 rows, so inner product is cosine similarity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, Protocol

import numpy as np

from qa.encoders.late import Span

Kind = Literal["query", "passage"]


class Embedder(Protocol):
    """Turns texts into unit vectors. ``fingerprint`` names the exact weights and backend,
    so an index never mixes vectors from two of them."""

    model_id: str
    dim: int
    fingerprint: str
    max_tokens: int

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def length_ordered(texts: Sequence[str], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``texts`` in batches of ``batch_size``, shortest texts first: an index mixes
    512-token paragraphs with 20-token sentences, and a batch pads every text to its longest."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]


def embed(embedder: Embedder, texts: Sequence[str], kind: Kind, batch_size: int = 64,
          progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Embed any number of texts in batches, reporting how many are done after each.
    Texts are batched in order of length (:func:`length_ordered`) and put back in their
    order after."""
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    done = 0
    for rows in length_ordered(texts, batch_size):
        out[rows] = embedder.embed_batch([texts[r] for r in rows], kind)
        done += len(rows)
        if progress:
            progress(done)
    return out


def spans_separately(embedder: Embedder, texts: Sequence[str], spans: Sequence[Sequence[Span]],
                     kind: Kind = "passage") -> tuple[np.ndarray, list[np.ndarray]]:
    """Each text's vector, and each span's text encoded again as a text of its own."""
    pieces = [t[a:b] for t, sp in zip(texts, spans, strict=True) for a, b in sp]
    done = embedder.embed_batch([*texts, *pieces], kind)
    bounds = np.cumsum([len(texts), *(len(sp) for sp in spans)])
    return done[:len(texts)], [done[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:],
                                                              strict=True)]


def embed_spans(embedder: Embedder, texts: Sequence[str], spans: Sequence[Sequence[Span]],
                kind: Kind = "passage", batch_size: int = 64) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each text's vector and one vector per character span of it, pooled from the same
    forward pass (late chunking, qa.encoders.late), batched by length like :func:`embed`.

    Needs the embedder's ``embed_with_spans``; one without token states is refused rather
    than quietly encoding the spans again (that is the "separate" mode, and costs a pass)."""
    method = getattr(embedder, "embed_with_spans", None)
    if method is None:
        from qa.errors import InvalidRequest

        raise InvalidRequest(f"the encoder {embedder.model_id!r} has no token states to pool "
                             "sentence vectors from; use QA_SENTENCE_VECTORS=separate")
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    pooled: list[np.ndarray] = [np.zeros((0, embedder.dim), np.float32)] * len(texts)
    for rows in length_ordered(texts, batch_size):
        vecs, per_text = method([texts[r] for r in rows], [spans[r] for r in rows], kind)
        out[rows] = vecs
        for r, sv in zip(rows, per_text, strict=True):
            pooled[r] = sv
    return out, pooled


class HashingEmbedder:
    """A fast deterministic fake: hashes jieba tokens and character bigrams into a small
    vector, so passages that share words with a query still rank first. For unit tests
    and for trying the service without model weights; never for real retrieval."""

    model_id = "hashing-fake"
    max_tokens = 512

    def __init__(self, dim: int = 256) -> None:
        from qa.ingest.tokenize import Tokenizer, normalize

        self.dim = dim
        self.fingerprint = f"hashing-fake-{dim}-v1"
        self._tok = Tokenizer()
        self._normalize = normalize

    def _features(self, text: str) -> list[str]:
        norm = self._normalize(text)
        chars = [c for c in norm if not c.isspace()]
        return self._tok(text) + ["".join(p) for p in zip(chars, chars[1:], strict=False)]

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feat in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def embed_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[Span]],
                         kind: Kind = "passage") -> tuple[np.ndarray, list[np.ndarray]]:
        """A bag of hashed features has no token states: each span is hashed on its own."""
        return spans_separately(self, texts, spans, kind)

    def count_tokens(self, text: str) -> int:
        return len(text)
