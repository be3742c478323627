"""BM25 over pre-tokenized passages, as one sparse matrix of precomputed term weights.

Scoring a query is a sparse column slice and a sum, so it stays fast at a million passages
and the matrix loads from one .npz without building per-passage Python objects.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse


class BM25Index:
    def __init__(self, vocab: dict[str, int], weights: sparse.csc_matrix, idf: np.ndarray,
                 k1: float = 1.2, b: float = 0.75) -> None:
        self.vocab = vocab
        self.weights = weights
        self.idf = idf
        self.k1 = k1
        self.b = b

    @classmethod
    def build(cls, docs: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> BM25Index:
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[float] = []
        lengths = np.zeros(len(docs), dtype=np.float32)
        for d, toks in enumerate(docs):
            lengths[d] = len(toks)
            for term, tf in Counter(toks).items():
                rows.append(d)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        n = len(docs)
        tf_arr = np.asarray(tfs, dtype=np.float32)
        row_arr = np.asarray(rows, dtype=np.int64)
        col_arr = np.asarray(cols, dtype=np.int64)
        df = np.bincount(col_arr, minlength=len(vocab)).astype(np.float32)
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        avgdl = float(lengths.mean()) if n and lengths.mean() > 0 else 1.0
        denom = tf_arr + k1 * (1 - b + b * lengths[row_arr] / avgdl)
        w = idf[col_arr] * tf_arr * (k1 + 1) / denom
        weights = sparse.csc_matrix((w, (row_arr, col_arr)), shape=(n, len(vocab)), dtype=np.float32)
        return cls(vocab, weights, idf, k1, b)

    @property
    def size(self) -> int:
        return int(self.weights.shape[0])

    def _terms(self, tokens: Sequence[str]) -> list[int]:
        return sorted({self.vocab[t] for t in tokens if t in self.vocab})

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage for the query tokens (each distinct term once)."""
        terms = self._terms(tokens)
        if not terms:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.weights[:, terms].sum(axis=1), dtype=np.float32).ravel()

    def coverage(self, tokens: Sequence[str]) -> float:
        """Share of the query's distinct tokens that occur in the corpus at all, weighted by
        how specific they would be (an unseen token counts as the rarest)."""
        uniq = set(tokens)
        if not uniq:
            return 0.0
        top = math.log1p((self.size + 0.5) / 0.5) if self.size else 1.0
        total = found = 0.0
        for t in uniq:
            if t in self.vocab:
                w = float(self.idf[self.vocab[t]])
                found += w
            else:
                w = top
            total += w
        return found / total if total else 0.0

    def max_score(self, tokens: Sequence[str]) -> float:
        """An upper bound of any passage's score for these tokens (all terms at saturation)."""
        return float(sum(self.idf[t] for t in self._terms(tokens)) * (self.k1 + 1))

    def save(self, directory: Path) -> None:
        sparse.save_npz(directory / "bm25.npz", self.weights, compressed=False)
        np.save(directory / "bm25_idf.npy", self.idf)
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        (directory / "bm25_vocab.json").write_text(
            json.dumps({"k1": self.k1, "b": self.b, "terms": terms}, ensure_ascii=False),
            encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        meta = json.loads((directory / "bm25_vocab.json").read_text(encoding="utf-8"))
        weights = sparse.load_npz(directory / "bm25.npz").tocsc()
        idf = np.load(directory / "bm25_idf.npy")
        vocab = {t: i for i, t in enumerate(meta["terms"])}
        return cls(vocab, weights, idf, meta["k1"], meta["b"])
