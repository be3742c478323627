"""Query -> fused, ranked, cited passages.

Modes:
  dense    multilingual embedding similarity (cross-lingual by construction)
  lexical  BM25 over jieba tokens (exact Chinese terms)
  hybrid   reciprocal-rank fusion of both (k=60), the common naive recipe, kept for comparison
  auto     query-aware fusion (the default): the lexical leg is weighted by how much of the
           query the corpus vocabulary actually covers, so an English question over Chinese
           text (whose BM25 hits are noise) is left to the dense leg, while an exact Chinese
           term lifts the paragraph that contains it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qa.encoders.base import Embedder
from qa.errors import UnknownDocument
from qa.index.load import LoadedIndex
from qa.index.second import second_of
from qa.ingest.tokenize import script_of, to_simplified
from qa.lru import LRU
from qa.retrieve.fusion import SecondParams, add_leg
from qa.retrieve.query import check_texts, validate
from qa.retrieve.second import SecondView
from qa.types import Hit, format_citation


@dataclass(frozen=True)
class FusionParams:
    """Weights of the auto mode; measured, not guessed: see docs/EVAL.md."""

    # Dense score = (1 - w) * paragraph cosine + w * best sentence cosine: a question is
    # usually about one sentence of a long paragraph, and the English->Chinese gain is large.
    sentence_weight: float = 0.4
    # English queries: subtract this share of each chunk's hubness (its closeness to generic
    # English questions), so that short generic passages stop winning every question.
    hub_penalty_en: float = 0.3
    lexical_weight: float = 0.1
    min_coverage: float = 0.3
    # English queries over Chinese text: BM25 still sees their digits and Latin names
    # ("GDP", "2025", "5G"), worth a small nudge; their other tokens match nothing.
    lexical_weight_en: float = 0.02
    rrf_k: int = 60
    candidates: int = 100
    # Confidence: logistic regression (bias, best dense score, lexical coverage, gap between
    # the best and the 10th dense score), one set for English queries and one for Chinese;
    # fitted by scripts/calibrate.py, the Chinese one on half A of the own questions only
    # (qa.evaluation.calibration), so that half B judges it (docs/EVAL.md, test_quality.py).
    conf_zh: tuple[float, float, float, float] = (-4.921, 1.186, 6.788, 0.748)
    conf_en: tuple[float, float, float, float] = (-75.929, 100.0, 0.0, 0.0)
    answerable_threshold: float = 0.5
    # A reporter's question restates what the user asks, so it outscores the answer that
    # follows it; in auto mode it is ranked below answers by this much.
    question_penalty: float = 0.1
    # The second encoder, when the index and the embedder have one (qa.retrieve.fusion).
    second: SecondParams = field(default_factory=SecondParams)


@dataclass
class SearchResult:
    query: str
    mode: str
    hits: list[Hit]
    took_ms: float
    confidence: float
    answerable: bool
    diagnostics: dict[str, float] = field(default_factory=dict)


class Searcher:
    """Searches one loaded index with one embedder; safe to call from several threads."""

    def __init__(self, index: LoadedIndex, embedder: Embedder,
                 params: FusionParams | None = None, cache_size: int = 4096) -> None:
        self.index = index
        self.embedder = embedder
        self.params = params or FusionParams()
        self._cache: LRU[str, np.ndarray] = LRU(cache_size)
        # Exact (flat) indexes are scanned whole by _dense_scan; approximate or remote ones
        # (HNSW above the size threshold, Milvus) give candidates first.
        self._scan = all(v.exhaustive for v in (index.vectors, index.sentences) if v is not None)
        second = second_of(embedder)
        self.second = None if second is None or index.second is None else SecondView(
            index.second, second, index.lexical, index.sentence_offsets, self.params.second,
            self._scan and index.second.vectors.exhaustive, cache_size)

    # -- legs ---------------------------------------------------------------------------
    def embed_query(self, query: str) -> np.ndarray:
        """The query's vector; repeated questions skip the encoder."""
        vec = self._cache.get(query)
        if vec is None:
            vec = self.embedder.embed_batch([query], "query")[0]
            self._cache.put({query: vec})
        return vec

    def prime_queries(self, queries: Sequence[str], batch_size: int = 64) -> None:
        """Embed many queries in batches ahead of searching them (evaluation, benchmarks)."""
        todo = list(dict.fromkeys(to_simplified(q.strip()) for q in queries if q.strip()))
        for i in range(0, len(todo), batch_size):
            part = todo[i:i + batch_size]
            self._cache.put(dict(zip(part, self.embedder.embed_batch(part, "query"), strict=True)))
            if self.second is not None:
                self.second.embed([q for q in part if self.second.active(script_of(q) == "en")])

    def _allowed_rows(self, doc_ids: Sequence[str] | None) -> list[int] | None:
        if doc_ids is None:
            return None
        check_texts(doc_ids, "doc_ids")
        known = self.index.store.documents
        unknown = [d for d in doc_ids if d not in known]
        if unknown:
            raise UnknownDocument(f"unknown doc_id(s): {', '.join(map(repr, unknown))}; "
                                  "GET /documents lists them")
        return self.index.store.rows_of(doc_ids)

    def _dense(self, qvec: np.ndarray, k: int, allowed: list[int] | None) -> dict[int, float]:
        """Candidates from the paragraph and the sentence vector indexes, scored exactly."""
        if allowed is not None and not allowed:
            return {}
        if self._scan:
            return self._dense_scan(qvec, k, allowed)
        scores, ids = self.index.vectors.search(qvec[None, :], k, allowed)
        para = {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=False) if i >= 0}
        idx = self.index
        if idx.sentences is None or self.params.sentence_weight == 0:
            return para
        allowed_s = None
        assert idx.sentence_offsets is not None and idx.sentence_owner is not None
        if allowed is not None:
            off = idx.sentence_offsets
            allowed_s = np.concatenate([np.arange(off[r], off[r + 1]) for r in allowed]).tolist()
        _, sids = idx.sentences.search(qvec[None, :], 3 * k, allowed_s)
        owners = {int(idx.sentence_owner[s]) for s in sids[0] if s >= 0}
        return self._dense_exact(qvec, sorted(set(para) | owners))

    def _dense_scan(self, qvec: np.ndarray, k: int, allowed: list[int] | None) -> dict[int, float]:
        """The blended score of every chunk, by two matrix-vector products over the stored
        vectors, and the best ``2k``. For an exact (flat) index this is what the candidate
        path approximates, at less cost: a flat FAISS search is the same scan, plus a heap and
        a second pass gathering the candidates' sentence rows."""
        idx = self.index
        scores = idx.vectors.score(qvec)
        w = self.params.sentence_weight
        if idx.sentences is not None and idx.sentence_offsets is not None and w:
            best = np.maximum.reduceat(idx.sentences.score(qvec), idx.sentence_offsets[:-1])
            scores = (1 - w) * scores + w * best
        rows = np.arange(len(scores)) if allowed is None else np.asarray(allowed, np.int64)
        if allowed is not None:
            scores = scores[rows]
        n = min(2 * k, len(rows))
        top = np.argpartition(-scores, n - 1)[:n] if n < len(rows) else np.arange(len(rows))
        return {int(r): float(v) for r, v in zip(rows[top], scores[top], strict=True)}

    def _lexical(self, tokens: list[str], k: int, allowed: list[int] | None) -> dict[int, float]:
        rows, scores = self.index.lexical.top(tokens, k, allowed)
        return {int(i): float(s) for i, s in zip(rows, scores, strict=True)}

    def _dense_exact(self, qvec: np.ndarray, rows: list[int]) -> dict[int, float]:
        """Dense scores of given chunk rows: paragraph cosine blended with max-sim over the
        chunk's sentences."""
        if not rows:
            return {}
        rows = sorted(rows)
        para = self.index.vectors.score(qvec, np.asarray(rows, dtype=np.int64))
        idx = self.index
        w = self.params.sentence_weight
        if idx.sentences is None or w == 0:
            return {r: float(s) for r, s in zip(rows, para, strict=True)}
        off = idx.sentence_offsets
        assert off is not None  # sentence vectors come with their offsets
        starts = off[rows]
        counts = off[np.asarray(rows) + 1] - starts
        firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # Every chunk's sentence rows, concatenated, without a Python loop.
        take = np.repeat(starts - firsts, counts) + np.arange(int(counts.sum()))
        sims = idx.sentences.score(qvec, take)
        best = np.maximum.reduceat(sims, firsts)
        blended = (1 - w) * para + w * best
        return {r: float(s) for r, s in zip(rows, blended, strict=True)}

    # -- fusion -------------------------------------------------------------------------
    def lexical_weight(self, english: bool, coverage: float) -> float:
        """How much to trust BM25 for this query: a token nudge for English, and for
        Chinese a weight that grows with the share of the query the corpus vocabulary covers
        (a query of words the corpus never uses gets dense ranking alone)."""
        p = self.params
        if english:
            return p.lexical_weight_en
        if coverage < p.min_coverage:
            return 0.0
        return p.lexical_weight * (coverage - p.min_coverage) / (1 - p.min_coverage + 1e-9)

    def _dehub(self, english: bool, dense: dict[int, float]) -> dict[int, float]:
        hub = self.index.hub_en
        if hub is None or not dense or self.params.hub_penalty_en == 0 \
                or not english:
            return dense
        beta = self.params.hub_penalty_en
        return {r: s - beta * float(hub[r]) for r, s in dense.items()}

    def _fuse_auto(self, english: bool, w: float, qvec: np.ndarray, tokens: list[str],
                   dense: dict[int, float], lexical: dict[int, float]) -> dict[int, float]:
        if w == 0.0 or not lexical:
            return dict(dense)
        missing = [r for r in lexical if r not in dense]
        dense_all = {**dense, **self._dehub(english, self._dense_exact(qvec, missing))}
        # BM25 scaled between "every query term saturated" and this query's best hit, so
        # that neither a long query nor a weak best match distorts the blend.
        scale = 0.5 * (self.index.lexical.max_score(tokens) or 1.0) + 0.5 * max(lexical.values())
        return {r: dense_all[r] + w * lexical.get(r, 0.0) / scale for r in dense_all}

    def _fuse_rrf(self, dense: dict[int, float], lexical: dict[int, float]) -> dict[int, float]:
        k = self.params.rrf_k
        fused: dict[int, float] = {}
        for leg in (dense, lexical):
            for rank, row in enumerate(sorted(leg, key=leg.__getitem__, reverse=True), start=1):
                fused[row] = fused.get(row, 0.0) + 1.0 / (k + rank)
        return fused

    def confidence(self, features: dict[str, float], english: bool) -> float:
        """Calibrated probability that the corpus answers the question."""
        b, w_best, w_cov, w_gap = self.params.conf_en if english else self.params.conf_zh
        z = (b + w_best * features["best_dense"] + w_cov * features["coverage"]
             + w_gap * features["gap"])
        if english and "second_best" in features and "translated_share" in features:
            b, w_best, w_second, w_known = self.params.second.confidence_en
            z = (b + w_best * features["best_dense"] + w_second * features["second_best"]
                 + w_known * features["translated_share"])
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    # -- public -------------------------------------------------------------------------
    def search(self, query: str, top_k: int = 5, mode: str = "auto",
               doc_ids: Sequence[str] | None = None) -> SearchResult:
        started = time.perf_counter()
        query = validate(query, top_k, mode)
        allowed = self._allowed_rows(doc_ids)
        n = self.params.candidates
        tokens = self.index.tokenizer(query)
        english = script_of(query) == "en"
        coverage = self.index.lexical.coverage(tokens)
        weight = self.lexical_weight(english, coverage)
        simple = to_simplified(query)
        begun = self.second.begin(simple, english, mode) if self.second is not None else None
        # Every mode embeds the query: the confidence is read off the dense leg.
        qvec = self.embed_query(simple)
        raw_dense = self._dense(qvec, n, allowed)
        dense = self._dehub(english, raw_dense) if mode != "lexical" else {}
        lexical = self._lexical(tokens, n, allowed) if mode != "dense" else {}
        translated: dict[int, float] = {}
        signals: dict[str, float] = {}
        if self.second is not None and mode != "lexical":
            dense, translated, signals = self.second.apply(
                simple, english, mode, dense, lexical, allowed, n,
                lambda rows: self._dehub(english, self._dense_exact(qvec, rows)), begun)
        if mode == "dense":
            fused = dense
        elif mode == "lexical":
            fused = lexical
        elif mode == "hybrid":
            fused = self._fuse_rrf(dense, lexical)
        else:
            fused = self._fuse_auto(english, weight, qvec, tokens, dense, lexical)
            fused = add_leg(fused, translated, self.params.second.translate_weight)
            questions = self.index.question_rows
            if questions is not None and self.params.question_penalty:
                fused = {r: v - self.params.question_penalty * bool(questions[r])
                         for r, v in fused.items()}
        ranked = sorted(fused, key=lambda r: (-fused[r], r))[:top_k]
        hits = self._hits(ranked, fused, dense, lexical)
        top_dense = sorted(raw_dense.values(), reverse=True)
        features = {
            "best_dense": top_dense[0] if top_dense else 0.0,
            "coverage": coverage,
            "gap": (top_dense[0] - top_dense[min(9, len(top_dense) - 1)]) if top_dense else 0.0,
        }
        features.update(signals)
        conf = self.confidence(features, english)
        return SearchResult(
            query=query, mode=mode, hits=hits,
            took_ms=(time.perf_counter() - started) * 1000.0,
            confidence=conf, answerable=conf >= self.params.answerable_threshold and bool(hits),
            diagnostics={**features, "lexical_weight": weight},
        )

    def _hits(self, ranked: list[int], fused: dict[int, float], dense: dict[int, float],
              lexical: dict[int, float]) -> list[Hit]:
        chunks = self.index.store.get(ranked)
        docs = self.index.store.documents
        hits = []
        for rank, row in enumerate(ranked, start=1):
            ch = chunks[row]
            doc = docs[ch.doc_id]
            legs = {"dense": dense[row]} if row in dense else {}
            if row in lexical:
                legs["lexical"] = lexical[row]
            hits.append(Hit(
                rank=rank, score=float(fused[row]), chunk=ch, title=doc.title, date=doc.date,
                citation=format_citation(doc.title, ch.paragraph, ch.speaker, ch.speaker_role,
                                         doc.date, ch.page),
                scores=legs,
            ))
        return hits
