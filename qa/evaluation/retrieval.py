"""Retrieval evaluation through the project's own pipeline.

A benchmark's paragraphs are written as a temporary corpus (one document per article,
paragraphs separated by blank lines), indexed by ``build_index`` with the chunker and the
embedder the service uses, and every question goes through ``Searcher.search`` as
``POST /search`` does. A hit is a returned chunk whose span overlaps the gold paragraph's
span in that document, so windows of a long paragraph count as their paragraph.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.encoders.base import Embedder
from qa.index.build import build_index
from qa.index.load import open_index
from qa.retrieve.query import MODES
from qa.retrieve.search import FusionParams, Searcher

KS = (1, 5, 10)


@dataclass(frozen=True)
class Gold:
    doc_id: str
    start: int
    end: int


@dataclass(frozen=True)
class Question:
    qid: str
    text: str
    gold: Gold | None  # None: the corpus cannot answer it
    lang: str = "zh"


@dataclass
class Slice:
    name: str
    questions: list[Question]


@dataclass
class Benchmark:
    """A corpus folder (already written) and the question slices asked of it."""

    name: str
    corpus_dir: Path
    slices: list[Slice]
    _tmp: Any = field(default=None, repr=False)


def _write_article(corpus: Path, doc_id: str, title: str, contexts: Sequence[str]) -> list[Gold]:
    text = ""
    golds = []
    for ctx in contexts:
        ctx = ctx.strip()
        if text:
            text += "\n\n"
        golds.append(Gold(doc_id, len(text), len(text) + len(ctx)))
        text += ctx
    (corpus / f"{doc_id}.txt").write_text(text + "\n", encoding="utf-8")
    (corpus / f"{doc_id}.meta.json").write_text(
        json.dumps({"title": title}, ensure_ascii=False), encoding="utf-8")
    return golds


def load_squad(path: Path, questions_from: Iterable[tuple[str, Path]] = (),
               name: str | None = None, limit: int | None = None) -> Benchmark:
    """A SQuAD-format file as a benchmark: its contexts are the corpus, its questions the
    first slice; ``questions_from`` adds slices of the same question ids in other files
    (XQuAD's English questions over the Chinese paragraphs)."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    tmp = tempfile.TemporaryDirectory(prefix="qa-eval-")
    corpus = Path(tmp.name) / "corpus"
    corpus.mkdir()
    gold_of: dict[str, Gold] = {}
    own: list[Question] = []
    for a, article in enumerate(data):
        doc_id = f"a{a:04d}"
        contexts = [p["context"] for p in article["paragraphs"]]
        golds = _write_article(corpus, doc_id, article.get("title") or doc_id, contexts)
        for p, para in enumerate(article["paragraphs"]):
            for qa in para["qas"]:
                gold_of[qa["id"]] = golds[p]
                own.append(Question(qa["id"], qa["question"], golds[p]))
    label = name or path.stem
    slices = [Slice(label, own[:limit] if limit else own)]
    for slice_name, other in questions_from:
        other_qs = {qa["id"]: qa["question"]
                    for art in json.loads(other.read_text(encoding="utf-8"))["data"]
                    for para in art["paragraphs"] for qa in para["qas"]}
        qs = [Question(q.qid, other_qs[q.qid], q.gold, "en")
              for q in own if q.qid in other_qs]
        slices.append(Slice(slice_name, qs[:limit] if limit else qs))
    return Benchmark(label, corpus, slices, tmp)


def load_corpus_questions(corpus_dir: Path, questions: Path,
                          unanswerable: Path | None = None) -> Benchmark:
    """The project's own question set over the shipped corpus: gold is the span of the
    evidence string in its document; one slice per language, plus the unanswerable set."""
    texts: dict[str, str] = {}
    by_lang: dict[str, list[Question]] = {}
    for line in questions.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        doc = q["doc_id"]
        if doc not in texts:
            path = next(p for p in corpus_dir.iterdir() if p.stem == doc and p.suffix != ".json")
            texts[doc] = path.read_bytes().decode("utf-8")
        start = texts[doc].index(q["evidence"])
        gold = Gold(doc, start, start + len(q["evidence"]))
        by_lang.setdefault(q["lang"], []).append(Question(q["id"], q["question"], gold, q["lang"]))
    slices = [Slice(f"corpus-{lang}", qs) for lang, qs in sorted(by_lang.items())]
    if unanswerable is not None and unanswerable.exists():
        qs = [Question(q["id"], q["question"], None, q["lang"])
              for q in map(json.loads, unanswerable.read_text(encoding="utf-8").splitlines())]
        slices.append(Slice("corpus-unanswerable", qs))
    return Benchmark("corpus", corpus_dir, slices)


def _rank_of_gold(hits, gold: Gold) -> int | None:
    seen: set[tuple[str, int]] = set()
    rank = 0
    for h in hits:
        key = (h.chunk.doc_id, h.chunk.paragraph)
        if key in seen:
            continue  # windows of one paragraph count once
        seen.add(key)
        rank += 1
        c = h.chunk
        if c.doc_id == gold.doc_id and c.char_start < gold.end and c.char_end > gold.start:
            return rank
    return None


def metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    out = {f"R@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in KS}
    out["MRR@10"] = sum(1.0 / r for r in ranks if r is not None and r <= 10) / n
    out["nDCG@10"] = sum(1.0 / math.log2(r + 1) for r in ranks if r is not None and r <= 10) / n
    return out


def no_answer_metrics(answerable_flags: Sequence[bool], unanswerable_flags: Sequence[bool]
                      ) -> dict[str, float]:
    """Share of unanswerable questions flagged, share of answerable ones wrongly flagged."""
    return {
        "unanswerable_flagged": (sum(1 for a in unanswerable_flags if not a)
                                 / max(1, len(unanswerable_flags))),
        "answerable_wrongly_flagged": (sum(1 for a in answerable_flags if not a)
                                       / max(1, len(answerable_flags))),
    }


def evaluate(bench: Benchmark, embedder: Embedder, modes: Sequence[str] = MODES,
             top_k: int = 10, variants: dict[str, FusionParams] | None = None,
             **build_options: Any) -> dict[str, Any]:
    """Index the benchmark corpus, ask every question in every mode, return the figures.
    ``variants`` re-scores the same index under other fusion parameters (ablations); their
    figures go under ``result["variants"][name]``."""
    with tempfile.TemporaryDirectory(prefix="qa-eval-index-") as tmp:
        t0 = time.perf_counter()
        report = build_index(bench.corpus_dir, Path(tmp) / "index", embedder, **build_options)
        index_s = time.perf_counter() - t0
        searcher = Searcher(open_index(Path(tmp) / "index", embedder), embedder)
        result: dict[str, Any] = {
            "benchmark": bench.name, "model": embedder.model_id,
            "fingerprint": embedder.fingerprint, "passages": report.chunks,
            "index_seconds": round(index_s, 2),
            "passages_per_second": round(report.chunks / index_s, 2) if index_s else None,
            "slices": _score(searcher, bench, modes, top_k),
        }
        if variants:
            default = searcher.params
            result["variants"] = {}
            for name, params in variants.items():
                searcher.params = params
                result["variants"][name] = _score(searcher, bench, modes, top_k)
            searcher.params = default
        searcher.index.close()
    return result


def _score(searcher: Searcher, bench: Benchmark, modes: Sequence[str],
           top_k: int) -> dict[str, Any]:
    slices: dict[str, Any] = {}
    for sl in bench.slices:
        t0 = time.perf_counter()
        searcher.prime_queries([q.text for q in sl.questions])
        embed_s = time.perf_counter() - t0
        entry: dict[str, Any] = {
            "questions": len(sl.questions),
            "query_embed_ms": round(1000 * embed_s / max(1, len(sl.questions)), 2),
            "modes": {}}
        for mode in modes:
            ranks: list[int | None] = []
            flags: list[bool] = []
            confs: list[float] = []
            t0 = time.perf_counter()
            for q in sl.questions:
                res = searcher.search(q.text, top_k=top_k, mode=mode)
                flags.append(res.answerable)
                confs.append(res.confidence)
                if q.gold is not None:
                    ranks.append(_rank_of_gold(res.hits, q.gold))
            search_ms = 1000 * (time.perf_counter() - t0) / max(1, len(sl.questions))
            m = metrics(ranks) if ranks else {}
            m["search_ms"] = round(search_ms, 2)
            m["flagged_unanswerable"] = sum(1 for f in flags if not f) / max(1, len(flags))
            entry["modes"][mode] = {k: round(v, 4) for k, v in m.items()}
            entry["modes"][mode]["confidences"] = confs if mode == "auto" else None
            entry["modes"][mode]["answerable"] = flags if mode == "auto" else None
            entry["modes"][mode]["ranks"] = ranks if mode == "auto" else None
        slices[sl.name] = entry
    return slices


def format_table(results: Sequence[dict[str, Any]]) -> str:
    lines = ["| benchmark | slice | n | mode | R@1 | R@5 | R@10 | MRR@10 | nDCG@10 | "
             "flagged no-answer | ms/query |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for name, sl in res["slices"].items():
            for mode, m in sl["modes"].items():
                cells = [f"{m[k]:.3f}" if k in m else "–"
                         for k in ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10")]
                lines.append(f"| {res['benchmark']} | {name} | {sl['questions']} | {mode} | "
                             + " | ".join(cells)
                             + f" | {m['flagged_unanswerable']:.3f} | "
                               f"{m['search_ms'] + sl['query_embed_ms']:.1f} |")
    return "\n".join(lines)


BENCHMARKS = ("xquad", "cmrc", "corpus")


def named_benchmark(name: str, data_dir: Path, corpus_dir: Path, questions_dir: Path,
                    limit: int | None = None) -> Benchmark:
    """The benchmarks of docs/EVAL.md by name; a missing data file is a clear error."""
    from qa.errors import InvalidRequest

    def need(path: Path) -> Path:
        if not path.exists():
            raise InvalidRequest(f"benchmark data {path} not found (set --data-dir)")
        return path

    if name == "xquad":
        return load_squad(need(data_dir / "xquad" / "xquad.zh.json"),
                          [("xquad-en->zh", need(data_dir / "xquad" / "xquad.en.json"))],
                          name="xquad-zh->zh", limit=limit)
    if name == "cmrc":
        return load_squad(need(data_dir / "cmrc2018" / "cmrc2018_dev.json"),
                          name="cmrc2018-dev", limit=limit)
    if name == "corpus":
        return load_corpus_questions(corpus_dir, need(questions_dir / "corpus_questions.jsonl"),
                                     questions_dir / "unanswerable.jsonl")
    raise InvalidRequest(f"unknown benchmark {name!r}; use {', '.join(BENCHMARKS)} or --squad")


def strip_details(result: dict[str, Any]) -> dict[str, Any]:
    """The result without per-question lists, for tables and JSON summaries."""
    out = json.loads(json.dumps(result))
    for slices in [out["slices"], *out.get("variants", {}).values()]:
        for sl in slices.values():
            for m in sl["modes"].values():
                for per_question in ("confidences", "answerable", "ranks"):
                    m.pop(per_question, None)
    return out
