"""The second encoder's part of a search: its dense scores fused into the first encoder's,
its dictionary translating English question words into corpus terms, and the signals it
adds to the no-answer confidence. Used by :class:`qa.retrieve.search.Searcher`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from qa.encoders.base import Embedder
from qa.index.lexical import BM25Index
from qa.index.second import SecondIndex
from qa.lru import LRU
from qa.retrieve.fusion import SecondParams, chunk_scores, fuse, top_rows
from qa.retrieve.translate import english_terms, nearest, term_weights, weighted_bm25

# Runs the second encoder beside the first: both spend their time in native code that
# releases the GIL (ONNX Runtime, numpy's BLAS), so at concurrency 1 the question costs
# about the longer of the two encoders instead of their sum. Threads start on first use.
# Dictionary neighbours asked beyond the ones kept, so that ties at the cut are broken the
# same way whichever engine holds the dictionary (qa.retrieve.translate.nearest).
_TIE_SLACK = 6
_BESIDE = ThreadPoolExecutor(max_workers=2, thread_name_prefix="qa-second-encoder")


def _vectors(cache: LRU[str, np.ndarray], texts: Sequence[str],
             compute: Callable[[list[str]], np.ndarray], dim: int) -> np.ndarray:
    """One row per text (repeats included), from ``cache`` or ``compute`` for the others."""
    hits, missing = cache.get_many(texts)
    if missing:
        computed = dict(zip(missing, compute(missing), strict=True))
        cache.put(computed)
        hits.update(computed)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        out[i] = hits[t]
    return out


class SecondView:
    """One generation's second-encoder arrays with the encoder that made them."""

    def __init__(self, index: SecondIndex, embedder: Embedder, lexical: Any,
                 sentence_offsets: np.ndarray | None, params: SecondParams, scan: bool,
                 cache_size: int = 4096) -> None:
        self.index = index
        self.embedder = embedder
        # The translated leg weights BM25 terms: over the local BM25 matrix, or with the
        # lexical index in Milvus by one weighted sparse search, the dictionary's BM25
        # columns and IDFs published with the generation (docs/SCALING.md).
        milvus = index.vocab_cols is not None and not isinstance(lexical, BM25Index)
        self.lexical: Any = lexical if isinstance(lexical, BM25Index) or milvus else None
        self.offsets = sentence_offsets if index.sentence_matrix is not None else None
        self.params = params
        self.scan = scan
        self._queries: LRU[str, np.ndarray] = LRU(cache_size)
        self._terms: LRU[str, np.ndarray] = LRU(4 * cache_size)
        # Dictionary row -> BM25 column (the same generation's vocabulary, so all present).
        self._col_idf: dict[int, float] = {}
        if milvus and index.vocab_cols is not None and index.vocab_idf is not None:
            self._vocab_cols = np.asarray(index.vocab_cols, dtype=np.int64)
            self._col_idf = dict(zip(index.vocab_cols.tolist(), index.vocab_idf.tolist(),
                                     strict=True))
        else:
            vocab = self.lexical.vocab if self.lexical is not None else {}
            self._vocab_cols = np.asarray([vocab.get(t, -1) for t in index.vocab_terms],
                                          dtype=np.int64)

    def active(self, english: bool) -> bool:
        return self.params.weight(english) > 0

    def _translates(self, english: bool) -> bool:
        return english and self.lexical is not None

    def begin(self, query: str, english: bool, mode: str) -> Future[None] | None:
        """Start embedding ``query`` (simplified) and its words in a helper thread, to
        overlap the first encoder's embedding of it; :meth:`apply` waits for it."""
        if mode == "lexical" or not self.active(english):
            return None
        terms = english_terms(query) if self._translates(english) else []
        return _BESIDE.submit(self._prefetch, query, terms)

    def _prefetch(self, query: str, terms: list[str]) -> None:
        """The question and its uncached words in one encoder call: USE runs short texts
        as one flat batch, so the words add little to the question (about 5 ms of CPU for
        both against 3 for the question alone on a quiet core; scripts/second_encoder_cost.py
        and docs/PERFORMANCE.md)."""
        q = self._queries.get_many([query])[1]
        t = self._terms.get_many(terms)[1]
        if not q and not t:
            return
        vecs = self._encode([*q, *t])
        self._queries.put(dict(zip(q, vecs[:len(q)], strict=True)))
        self._terms.put(dict(zip(t, vecs[len(q):], strict=True)))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return _vectors(self._queries, list(texts), self._encode, self.embedder.dim)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed_batch(texts, "query")

    def apply(self, query: str, english: bool, mode: str, dense: dict[int, float],
              lexical: dict[int, float], allowed: list[int] | None, k: int,
              exact: Callable[[list[int]], dict[int, float]],
              begun: Future[None] | None = None
              ) -> tuple[dict[int, float], dict[int, float], dict[str, float]]:
        """What this encoder does to one search: (the fused dense scores, the translated
        lexical leg for the auto mode, the confidence signals). ``query`` is simplified;
        ``begun`` is :meth:`begin`'s future for it, if the search started one."""
        if not self.active(english):
            return dense, {}, {}
        translate = self._translates(english)
        if begun is not None:
            begun.result()  # anything it left uncached, embed() and translated() fill in
        else:
            self._prefetch(query, english_terms(query) if translate else [])
        translated, found = self.translated(query, k, allowed) if translate else ({}, {})
        fused, signals = self.fuse(self.embed([query])[0], english, dense,
                                   [*lexical, *translated], allowed, 2 * k, exact)
        # The translated leg ranks in the auto mode only; its signals serve every mode.
        return fused, translated if mode == "auto" else {}, {**signals, **found}

    # -- dense ----------------------------------------------------------------------------
    def scores(self, qvec: np.ndarray, english: bool,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(raw, corrected) chunk scores of ``rows`` (all when None); corrected subtracts
        the hubness share for English questions."""
        idx, p = self.index, self.params
        raw = chunk_scores(qvec, idx.matrix, rows, idx.sentence_matrix, self.offsets,
                           p.sentence_weight)
        if english and idx.hub_en is not None and p.hub_penalty_en:
            hub = idx.hub_en if rows is None else idx.hub_en[rows]
            return raw, raw - p.hub_penalty_en * hub
        return raw, raw

    def _candidates(self, qvec: np.ndarray, english: bool, k: int,
                    allowed: list[int] | None) -> list[int]:
        if self.scan:
            rows = None if allowed is None else np.asarray(allowed, dtype=np.int64)
            _, corrected = self.scores(qvec, english, rows)
            top = top_rows(corrected, k)
            return (top if rows is None else rows[top]).tolist()
        _, ids = self.index.vectors.search(qvec[None, :], k, allowed)
        return [int(i) for i in ids[0] if i >= 0]

    def fuse(self, qvec: np.ndarray, english: bool, dense: dict[int, float],
             extra: Iterable[int], allowed: list[int] | None, k: int,
             exact: Callable[[list[int]], dict[int, float]]
             ) -> tuple[dict[int, float], dict[str, float]]:
        """The first encoder's (corrected) dense scores fused with this encoder's over the
        union of both encoders' candidates and ``extra`` rows; ``exact`` gives the first
        encoder's scores of rows it did not propose. Also returns the confidence signals."""
        if allowed is not None and not allowed:
            return dense, {}
        rows = sorted(set(dense) | set(self._candidates(qvec, english, k, allowed)) | set(extra))
        missing = [r for r in rows if r not in dense]
        first = {**dense, **(exact(missing) if missing else {})}
        rows_a = np.asarray(rows, dtype=np.int64)
        raw, corrected = self.scores(qvec, english, rows_a)
        mixed = fuse(np.array([first[r] for r in rows], np.float32), corrected,
                     self.params.weight(english))
        return dict(zip(rows, mixed.tolist(), strict=True)), self._signals(raw, rows_a, first)

    @staticmethod
    def _signals(raw: np.ndarray, rows: np.ndarray, first: dict[int, float]) -> dict[str, float]:
        if raw.size == 0:
            return {}
        order = np.argsort(-raw)
        top_first = max(first, key=first.__getitem__)
        return {"second_best": float(raw[order[0]]),
                "second_gap": float(raw[order[0]] - raw[order[min(9, raw.size - 1)]]),
                "agree": float(int(rows[order[0]]) == top_first)}

    # -- translated lexical leg -------------------------------------------------------------
    def translated(self, query: str, k: int, allowed: list[int] | None
                   ) -> tuple[dict[int, float], dict[str, float]]:
        """The best ``k`` chunks for the English question's words translated into corpus
        terms, scored between 0 and about 1 (BM25 over this query's bound and best hit);
        and two signals for the confidence: the share of the question's words that have a
        translation in the corpus, and the best chunk's share of the bound."""
        p, lex = self.params, self.lexical
        terms = english_terms(query)
        if lex is None or not terms or not len(self._vocab_cols):
            return {}, {"translated_share": 0.0, "translated_best": 0.0}
        vecs = _vectors(self._terms, terms, self._encode, self.embedder.dim)
        sims, ids = nearest(*self.index.vocab.search(vecs, p.translate_per_term + _TIE_SLACK),
                            p.translate_per_term)
        # A word the corpus knows: one with a translation among its terms, or one that it
        # uses as it is (digits, GDP, 5G). Unanswerable questions name things it does not.
        words = [i for i, t in enumerate(terms) if " " not in t]
        as_is = lex.vocab if isinstance(lex, BM25Index) else \
            lex.columns([terms[i] for i in words])
        known = [sims[i, 0] >= p.translate_floor or terms[i] in as_is for i in words]
        found = {"translated_share": float(np.mean(known)) if words else 0.0,
                 "translated_best": 0.0}
        weights = term_weights(sims, ids, self._vocab_cols, p.translate_floor)
        if not weights:
            return {}, found
        rows, sub, bound = self._weighted(weights, k, allowed)
        if not rows.size:
            return {}, found
        best = float(sub.max())
        found["translated_best"] = best / bound if bound else 0.0
        scale = 0.5 * bound + 0.5 * best
        return {int(r): float(s) / scale for r, s in zip(rows, sub, strict=True)}, found

    def _weighted(self, weights: dict[int, float], k: int, allowed: list[int] | None
                  ) -> tuple[np.ndarray, np.ndarray, float]:
        """Rows and BM25 scores of the best ``k`` chunks (above 0) for weighted terms, and
        the bound of any chunk's score."""
        lex = self.lexical
        if not isinstance(lex, BM25Index):
            bound = 0.0
            for c, w in weights.items():  # summed as weighted_bm25 sums it
                bound += w * self._col_idf[c] * (lex.k1 + 1)
            rows, scores = lex.weighted_top(weights, k, allowed)
            return rows, scores, bound
        scores, bound = weighted_bm25(lex.weights, lex.idf, lex.k1, weights)
        every = np.arange(len(scores)) if allowed is None else np.asarray(allowed, np.int64)
        sub = scores[every]
        hit = np.flatnonzero(sub > 0)
        hit = hit[top_rows(sub[hit], k)] if hit.size else hit
        return every[hit], sub[hit], bound
