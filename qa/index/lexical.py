"""BM25 over pre-tokenized passages, as one sparse matrix of precomputed term weights.

Scoring a query is a sparse column slice and a sum, so it stays fast at a million passages
and the matrix loads from one .npz without building per-passage Python objects.
"""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import sparse


class LexicalIndex(Protocol):
    """The lexical leg as search sees it: BM25 here (files in the generation) or in Milvus
    (``qa.index.milvus_lexical``). Rows are the chunk store's rows; the fusion stays in
    ``qa.retrieve.search``."""

    size: int

    def top(self, tokens: Sequence[str], k: int,
            allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the k best passages with a positive score, best first."""
        ...

    def coverage(self, tokens: Sequence[str]) -> float: ...

    def max_score(self, tokens: Sequence[str]) -> float: ...


class BM25Index:
    def __init__(self, vocab: dict[str, int], weights: sparse.csc_matrix, idf: np.ndarray,
                 k1: float = 1.2, b: float = 0.75) -> None:
        self.vocab = vocab
        self.weights = weights
        self.idf = idf
        self.k1 = k1
        self.b = b

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> BM25Index:
        builder = BM25Builder()
        for toks in docs:
            builder.add(toks)
        return builder.finish(k1, b)

    @property
    def size(self) -> int:
        return int(self.weights.shape[0])

    def _terms(self, tokens: Sequence[str]) -> list[int]:
        return sorted({self.vocab[t] for t in tokens if t in self.vocab})

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage for the query tokens (each distinct term once)."""
        out = np.zeros(self.size, dtype=np.float32)
        w = self.weights
        # Each term's column straight from the CSC arrays (a row occurs once per column, so
        # the fancy += is exact): scipy's column slicing and sum cost ~0.2 ms a query here.
        for t in self._terms(tokens):
            lo, hi = w.indptr[t], w.indptr[t + 1]
            out[w.indices[lo:hi]] += w.data[lo:hi]
        return out

    def top(self, tokens: Sequence[str], k: int,
            allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ``k`` best passages with a positive score, best first, ties
        by row; only among ``allowed`` rows if given. A partial sort: at a million passages a
        frequent term matches most of them, and sorting them all took 50-100 ms."""
        scores = self.scores(tokens)
        rows = None
        if allowed is not None:
            rows = np.unique(np.asarray(allowed, dtype=np.int64).reshape(-1))
            rows = rows[(rows >= 0) & (rows < self.size)]
            scores = scores[rows]
        hit = np.flatnonzero(scores > 0)
        if hit.size > k > 0:
            kth = np.partition(scores[hit], hit.size - k)[hit.size - k]
            above = hit[scores[hit] > kth]
            hit = np.concatenate([above, hit[scores[hit] == kth][:k - above.size]])
        hit = hit[np.argsort(-scores[hit], kind="stable")][:max(k, 0)]
        return (hit if rows is None else rows[hit]), scores[hit]

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


class BM25Builder:
    """Postings added one passage at a time, so that a build streams: it holds the typed
    arrays of the finished matrix (8 bytes per distinct term of each passage) and the
    vocabulary, never the passages' token lists. At a million passages Python lists of
    (row, col, tf) and a COO detour peaked at 3.2 GB, hence typed arrays, row by row (CSR),
    and one conversion to CSC at the end."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self._cols = array("i")
        self._tfs = array("f")
        self._indptr = array("q", [0])
        self._lengths = array("f")

    def __len__(self) -> int:
        return len(self._lengths)

    def add(self, tokens: Sequence[str]) -> None:
        counts = Counter(tokens)
        self._lengths.append(len(tokens))
        vocab = self.vocab
        self._cols.extend([vocab.setdefault(term, len(vocab)) for term in counts])
        self._tfs.extend(counts.values())
        self._indptr.append(len(self._cols))

    def finish(self, k1: float = 1.2, b: float = 0.75) -> BM25Index:
        n = len(self._lengths)
        vocab = self.vocab
        col_arr = np.frombuffer(self._cols, dtype=np.int32) if self._cols \
            else np.zeros(0, np.int32)
        # The term frequencies become the weights in place (the builder is spent after this):
        # the five temporaries of a postings' length that one expression made were twice the
        # matrix itself.
        w = np.frombuffer(self._tfs, dtype=np.float32) if self._tfs \
            else np.zeros(0, np.float32)
        indptr = np.frombuffer(self._indptr, dtype=np.int64)
        lengths = np.frombuffer(self._lengths, dtype=np.float32) if n \
            else np.zeros(0, np.float32)
        df = np.bincount(col_arr, minlength=len(vocab)).astype(np.float32)
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        avgdl = float(lengths.mean()) if n and lengths.mean() > 0 else 1.0
        norm = (k1 * (1 - b + b * lengths / avgdl)).astype(np.float32)
        # idf * tf * (k1 + 1) / (tf + norm), in the same order of operations as ever, so the
        # weights are the same to the bit.
        denom = np.repeat(norm, np.diff(indptr))
        denom += w
        np.multiply(idf[col_arr], w, out=w)
        w *= k1 + 1
        w /= denom
        del denom
        weights = sparse.csr_matrix((w, col_arr, indptr), shape=(n, len(vocab)),
                                    dtype=np.float32).tocsc()
        self._cols, self._tfs = array("i"), array("f")
        return BM25Index(vocab, weights, idf, k1, b)
