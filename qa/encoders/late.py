"""Late chunking: sentence vectors pooled from the token states of the paragraph's own pass.

A transformer already computes a contextual vector for every token of a paragraph; the mean
of the token vectors inside one sentence's character span is a vector for that sentence,
at no extra encoder cost (Günther et al., "Late Chunking", 2024). The separate path encodes
every sentence again as a text of its own (about ten short texts per CMRC paragraph).

Spans are character offsets into the text *without* the prompt; ``shift`` (the prompt's
length) moves them onto the tokenizer's offsets of ``prompt + text``. Numpy only: the
backends hand in their token states and the fast tokenizer's offset mapping.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Span = tuple[int, int]


def token_ranges(offsets: Sequence[tuple[int, int]], spans: Sequence[Span],
                 shift: int = 0) -> np.ndarray:
    """``(len(spans), 2)`` token index ranges ``[lo, hi)``: the tokens whose characters
    overlap each span. Special tokens (offset ``(0, 0)``) never count; a token that straddles
    two sentences (``。他`` merged) counts for both. A span with no token (cut off by
    truncation) gets ``(0, 0)``."""
    out = np.zeros((len(spans), 2), dtype=np.int64)
    if not len(spans) or not len(offsets):
        return out
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts, ends = off[:, 0], off[:, 1]
    real = ends > starts
    sp = np.asarray(spans, dtype=np.int64).reshape(-1, 2) + shift
    # (spans x tokens): small (tens of sentences x at most the window), and it keeps the
    # rule in one line: a token belongs to a span if their character ranges overlap.
    hit = real[None, :] & (starts[None, :] < sp[:, 1:2]) & (ends[None, :] > sp[:, 0:1])
    any_hit = hit.any(axis=1)
    out[any_hit, 0] = hit[any_hit].argmax(axis=1)
    out[any_hit, 1] = hit.shape[1] - hit[any_hit][:, ::-1].argmax(axis=1)
    return out


def pool_spans(states: np.ndarray, offsets: Sequence[tuple[int, int]], spans: Sequence[Span],
               shift: int, fallback: np.ndarray) -> np.ndarray:
    """L2-normalised mean of ``states`` (tokens x dim, one text) over each span's tokens.
    A span with no token left after truncation gets ``fallback`` (the text's own vector):
    the chunker keeps chunks inside the window, so this only happens for text the model
    never saw, e.g. past a long breadcrumb prefix."""
    ranges = token_ranges(offsets, spans, shift)
    lo, hi = ranges[:, 0], ranges[:, 1]
    if ranges.size and int(hi.max()) >= states.shape[0]:  # reduceat needs indices < len
        states = np.vstack([states, np.zeros((1, states.shape[1]), states.dtype)])
    # One pass over the tokens, single-threaded: with the boundaries interleaved
    # (lo0, hi0, lo1, hi1, ...) every even result is a span's sum, whether or not spans share
    # a token (the odd ones, the gaps, are dropped). A BLAS product or a float64 cumulative sum
    # cost 20-40x more here, their threads spinning against the encoder's.
    sums = np.add.reduceat(states, ranges.ravel(), axis=0)[::2] if ranges.size \
        else np.zeros((0, states.shape[1]), np.float32)
    out = (sums / np.maximum(hi - lo, 1)[:, None]).astype(np.float32, copy=False)
    out[hi <= lo] = fallback
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out
