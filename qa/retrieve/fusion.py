"""Fusing a second encoder's scores into the first one's: pure functions over score arrays.

Two encoders' cosines live on different scales (e5's sit in a narrow band around 0.8, USE's
spread from 0 to 0.7), so each is normalised per query over the same candidate rows before
they are added. The sum is expressed in the first encoder's units,

    fused = primary + w * std(primary) * zscore(second),

which ranks exactly like ``zscore(primary) + w * zscore(second)`` but keeps the scale that
the lexical leg, the reporter-question penalty and the confidence were tuned on. The weight
``w`` depends on the question's language (docs/EVAL.md, "Two encoders": chosen on XQuAD,
checked on CMRC and the own question sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SecondParams:
    """How the second encoder (USE) enters the dense score; measured, see docs/EVAL.md."""

    weight_en: float = 0.5
    # Chinese questions: e5 with BM25 is already at R@1 0.96-0.99, and every weight tried
    # lost more than the 0.003 allowed on one of the Chinese slices.
    weight_zh: float = 0.0
    # Its own chunk score: (1 - s) * paragraph cosine + s * best sentence cosine.
    sentence_weight: float = 0.6
    # English questions: its own hubness correction, like e5's (search.FusionParams).
    hub_penalty_en: float = 0.3
    # English questions, auto mode: the question's words translated into corpus terms
    # through the second encoder (qa.retrieve.translate), as a BM25 leg of this weight;
    # each word keeps its `translate_per_term` nearest terms at cosine >= `translate_floor`.
    translate_weight: float = 0.1
    translate_floor: float = 0.6
    translate_per_term: int = 2
    # The no-answer confidence of English questions when this encoder is on: logistic
    # weights (bias, best e5 score, best USE score, share of the question's words the
    # corpus knows: translated or used as they are). Fitted by scripts/calibrate.py on one
    # half of the own English questions; docs/EVAL.md reports the other half.
    confidence_en: tuple[float, float, float, float] = (-19.315, 15.712, 13.416, 4.085)

    def weight(self, english: bool) -> float:
        return self.weight_en if english else self.weight_zh


def zscore(scores: np.ndarray) -> np.ndarray:
    """Scores centred on their mean, in units of their standard deviation (zeros when all
    are equal: then the encoder has no opinion on these rows)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores.astype(np.float32)
    sd = scores.std()
    if not np.isfinite(sd) or sd < 1e-9:
        return np.zeros(scores.shape, dtype=np.float32)
    return ((scores - scores.mean()) / sd).astype(np.float32)


def fuse(primary: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """``primary + weight * std(primary) * zscore(second)`` over the same rows.

    Both arrays hold one score per candidate row, in the same order. With one row, or a
    weight of 0, the primary scores come back unchanged."""
    primary = np.asarray(primary, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    if primary.shape != second.shape:
        raise ValueError(f"score arrays differ in shape: {primary.shape} and {second.shape}")
    if weight == 0 or primary.size < 2:
        return primary.copy()
    return (primary + weight * float(primary.std()) * zscore(second)).astype(np.float32)


def chunk_scores(qvec: np.ndarray, matrix: np.ndarray, rows: np.ndarray | None = None,
                 sentence_matrix: np.ndarray | None = None,
                 sentence_offsets: np.ndarray | None = None,
                 sentence_weight: float = 0.0) -> np.ndarray:
    """One encoder's score of chunk ``rows`` (all chunks when None): the paragraph cosine,
    blended with the best cosine among the chunk's sentences when there are sentence vectors
    (``sentence_offsets[r]:sentence_offsets[r + 1]`` are chunk r's sentence rows, at least
    one per chunk)."""
    if rows is None:
        para = np.asarray(matrix, dtype=np.float32) @ qvec
    else:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros(0, dtype=np.float32)
        para = np.asarray(matrix[rows], dtype=np.float32) @ qvec
    if sentence_matrix is None or sentence_offsets is None or not sentence_weight:
        return para
    off = np.asarray(sentence_offsets, dtype=np.int64)
    if rows is None:
        best = np.maximum.reduceat(np.asarray(sentence_matrix, np.float32) @ qvec, off[:-1])
    else:
        starts, counts = off[rows], off[rows + 1] - off[rows]
        firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # Every chunk's sentence rows, concatenated, without a Python loop.
        take = np.repeat(starts - firsts, counts) + np.arange(int(counts.sum()))
        sims = np.asarray(sentence_matrix[take], dtype=np.float32) @ qvec
        best = np.maximum.reduceat(sims, firsts)
    return (1 - sentence_weight) * para + sentence_weight * best


def add_leg(fused: dict[int, float], leg: dict[int, float], weight: float) -> dict[int, float]:
    """``fused`` plus ``weight`` times a further leg's score on the rows both have (a leg's
    rows are candidates of the fused scores already)."""
    if not leg or not weight:
        return fused
    return {r: v + weight * leg.get(r, 0.0) for r, v in fused.items()}


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores (unordered)."""
    if k >= len(scores):
        return np.arange(len(scores))
    return np.argpartition(-scores, k - 1)[:k]
