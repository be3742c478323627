"""Hubness: how strongly each chunk attracts English questions in general."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qa.index.rows import Rows

REFERENCE_BANK = Path(__file__).resolve().parent.parent / "data" / "reference_queries_en.txt"
HUB_K = 10
HUB_SENTENCE_WEIGHT = 0.4
# Chunks scored at a time: with their sentences (about ten each) and their scores against
# the bank, a block is a few MB; 2048 at a time cost 25 MiB of a 5k-paragraph build's peak.
BLOCK = 512


def reference_queries() -> list[str]:
    """Generic English questions (none from any evaluation set) used to measure hubness."""
    if not REFERENCE_BANK.exists():
        return []
    lines = REFERENCE_BANK.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def top_k_mean(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the mean of its ``k`` best scores (all of them if fewer): a text's hubness
    against a bank of reference questions."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros(len(scores), dtype=np.float32)
    return np.sort(scores, axis=1)[:, -k:].mean(axis=1)


def hub_scores(bank: np.ndarray, vectors: np.ndarray | Rows,
               sentences: tuple[np.ndarray | Rows, np.ndarray] | None,
               block: int | None = None) -> np.ndarray:
    """How strongly each chunk attracts English questions in general: the mean of its
    ``HUB_K`` best dense scores against the reference bank. Short or generic Chinese passages
    ("感谢记者朋友的提问") sit close to every English question; search subtracts a share
    of this for English queries (a CSLS-style hubness correction).

    ``vectors`` and the sentence rows may be files (qa.index.rows), read ``block`` chunks
    (:data:`BLOCK`) at a time with their sentences, so memory does not grow with the corpus."""
    block = block or BLOCK
    n = len(vectors)
    out = np.zeros(n, dtype=np.float32)
    k = min(HUB_K, len(bank))
    w = HUB_SENTENCE_WEIGHT if sentences is not None else 0.0
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        scores = np.asarray(vectors[lo:hi], dtype=np.float32) @ bank.T
        if sentences is not None:
            sent_vecs, offsets = sentences
            a, b = offsets[lo], offsets[hi]
            sims = np.asarray(sent_vecs[a:b], dtype=np.float32) @ bank.T
            best = np.maximum.reduceat(sims, offsets[lo:hi] - a, axis=0)
            scores = (1 - w) * scores + w * best
        out[lo:hi] = top_k_mean(scores, k)
    return out


