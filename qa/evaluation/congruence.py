"""Congruence of two retrieval backends (FAISS + local BM25 vs Milvus, docs/SCALING.md): the
same benchmark indexed into each, every question asked of both; the share of questions
whose top-k chunks are identical, R@1 / R@5 for each, and the questions that differ."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Embedder, embed
from qa.evaluation.retrieval import Benchmark, _rank_of_gold, metrics
from qa.index.build import build_index
from qa.index.load import open_index
from qa.index.vectors.store import VectorStore
from qa.retrieve.search import Searcher


class _Replay:
    """Embeds each passage once and replays it for the second build (both backends get
    bit-identical vectors, so any difference is the engines')."""

    def __init__(self, embedder: Embedder, batch_size: int) -> None:
        self.embedder, self.batch_size = embedder, batch_size
        self.seen: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str],
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if todo:
            self.seen.update(zip(todo, embed(self.embedder, todo, "passage", self.batch_size),
                                 strict=True))
        return np.stack([self.seen[t] for t in texts]) if texts else np.zeros((0, 0))


def compare_backends(bench: Benchmark, embedder: Embedder, a: VectorStore, b: VectorStore, *,
                     top_k: int = 5, modes: Sequence[str] = ("auto",), batch_size: int = 32,
                     keep: int = 30) -> dict[str, Any]:
    """Index ``bench`` into backend ``a`` and ``b``; per mode and slice, the share of questions with
    the same top-k chunk ids (and the largest score difference among those), R@1 / R@5 of
    each, median search latency of each, and up to ``keep`` differing questions."""
    replay = _Replay(embedder, batch_size)
    with tempfile.TemporaryDirectory(prefix="qa-congruence-") as tmp:
        searchers = []
        for name, store in (("a", a), ("b", b)):
            build_index(bench.corpus_dir, Path(tmp) / name, embedder, vector_store=store,
                        embed_passages=replay, batch_size=batch_size)
            searchers.append(Searcher(open_index(Path(tmp) / name, embedder, store), embedder))
        out: dict[str, Any] = {"benchmark": bench.name, "fingerprint": embedder.fingerprint,
                               "top_k": top_k, "modes": {}}
        for mode in modes:
            out["modes"][mode] = _compare(searchers, bench, mode, top_k, keep)
        for s in searchers:
            s.index.close()
    return out


def _compare(searchers: list[Searcher], bench: Benchmark, mode: str, top_k: int,
             keep: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for sl in bench.slices:
        qs = [q for q in sl.questions if q.gold is not None]
        if not qs:
            continue
        for s in searchers:
            s.prime_queries([q.text for q in qs])
        ranks: list[list[int | None]] = [[], []]
        took: list[list[float]] = [[], []]
        same = 0
        gap = 0.0  # the largest score difference of a chunk both put in the same place
        diffs: list[Any] = []
        for q in qs:
            hits = []
            for i, s in enumerate(searchers):
                t0 = time.perf_counter()
                hits.append(s.search(q.text, top_k=max(top_k, 5), mode=mode).hits)
                took[i].append((time.perf_counter() - t0) * 1000)
                ranks[i].append(_rank_of_gold(hits[i], q.gold) if q.gold else None)
            ids = [[h.chunk.chunk_id for h in hs[:top_k]] for hs in hits]
            if ids[0] == ids[1]:
                same += 1
                gap = max([gap, *(abs(x.score - y.score)
                                  for x, y in zip(hits[0][:top_k], hits[1][:top_k],
                                                  strict=True))])
            elif len(diffs) < keep:
                diffs.append({"qid": q.qid, "question": q.text, "a": ids[0], "b": ids[1],
                              "a_scores": [round(h.score, 5) for h in hits[0][:top_k]],
                              "b_scores": [round(h.score, 5) for h in hits[1][:top_k]]})
        result[sl.name] = {
            "questions": len(qs), "same_top_k": round(same / len(qs), 4),
            "max_score_diff": float(f"{gap:.3g}"),
            "a": {**metrics(ranks[0]), **_latency(took[0])},
            "b": {**metrics(ranks[1]), **_latency(took[1])},
            "differences": diffs}
    return result


def _latency(took: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.median(took)), 2),
            "p95_ms": round(float(np.percentile(took, 95)), 2)}
