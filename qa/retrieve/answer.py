"""Extractive answers: the best sentences of the retrieved passages, quoted exactly.

A question is searched as usual; the top passages are cut into sentences at 。！？!?；;
(closing quotes and brackets stay with their sentence), every sentence is embedded with
the searcher's own embedder as a "passage" and scored against the query embedding. That
is what lets an English question pick the right Chinese sentence. Every quoted sentence
keeps exact offsets into its source document, so ``source[char_start:char_end]`` is the
sentence character for character, and a marker ``[n]`` that points at passage ``n`` of the
search results (``n`` is the passage's rank).

Pure: takes a Searcher and plain arguments, reads no settings, knows nothing of HTTP.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

import numpy as np

from qa.errors import InvalidRequest
from qa.index.hubness import HUB_K, reference_queries, top_k_mean
from qa.ingest.chunking import rejoin_lines, split_sentences
from qa.ingest.tokenize import script_of, to_simplified
from qa.retrieve.search import Searcher, SearchResult
from qa.types import Hit

MAX_SENTENCES = 10
NOT_COVERED = {
    "en": "The corpus does not appear to cover this question.",
    "zh": "语料库中似乎没有相关内容。",
}

# A quote worth showing has some words in it: "一、" or "谢谢。" alone is not an answer.
_WORDY = re.compile(r"[\w\u3400-\u9fff]")
_MIN_WORD_CHARS = 4


@dataclass(frozen=True)
class Sentence:
    """One quoted sentence: ``text`` is the exact source slice [char_start, char_end) of
    document ``doc_id``; ``passage`` is the 1-based rank of the passage it was cut from."""

    text: str
    display_text: str
    doc_id: str
    paragraph: int
    passage: int
    char_start: int
    char_end: int
    score: float


@dataclass
class Answer:
    question: str
    language: str
    text: str
    sentences: list[Sentence]
    result: SearchResult
    took_ms: float

    @property
    def answerable(self) -> bool:
        return self.result.answerable

    @property
    def confidence(self) -> float:
        return self.result.confidence


def language_of(text: str) -> str:
    """'en' for an English question, else 'zh' (Chinese, traditional or mixed)."""
    return "en" if script_of(text) == "en" else "zh"


def _wordy(text: str) -> bool:
    return len(_WORDY.findall(text)) >= _MIN_WORD_CHARS


def candidates(hits: list[Hit]) -> list[Sentence]:
    """Every quotable sentence of the passages, unscored; a sentence seen in an earlier
    (better-ranked) passage is not repeated, as overlapping windows share sentences."""
    seen: set[tuple[str, int, int]] = set()
    out: list[Sentence] = []
    for hit in hits:
        c = hit.chunk
        for a, b in split_sentences(c.text, c.char_start):
            key = (c.doc_id, a, b)
            text = c.text[a - c.char_start:b - c.char_start]
            if key in seen or not _wordy(text):
                continue
            seen.add(key)
            out.append(Sentence(text=text, display_text=rejoin_lines(text), doc_id=c.doc_id,
                                paragraph=c.paragraph, passage=hit.rank, char_start=a,
                                char_end=b, score=0.0))
    return out


# English questions over Chinese sentences: short generic sentences ("二是推进产业基础再造
#和产业链提升。") sit close to every English question. Subtracting their closeness to generic
# English questions, and favouring sentences of the passages the search ranked best, put the
# evidence sentence first for 0.66 of the own English questions instead of 0.46 (top 3: 0.91
# instead of 0.80); for Chinese questions neither helps, so they keep the plain cosine.
EN_HUB_PENALTY = 0.5
EN_PASSAGE_PRIOR = 0.5
_BANKS: dict[str, np.ndarray] = {}


def _reference_bank(searcher: Searcher) -> np.ndarray:
    key = searcher.embedder.fingerprint
    if key not in _BANKS:
        bank = reference_queries()
        _BANKS[key] = (searcher.embedder.embed_batch(bank, "query") if bank
                       else np.zeros((0, searcher.embedder.dim), np.float32))
    return _BANKS[key]


def score_sentences(searcher: Searcher, question: str, sentences: list[Sentence],
                    hits: list[Hit] | None = None) -> list[Sentence]:
    """Cosine of the query embedding with each sentence's passage embedding; for English
    questions, corrected for hubness and nudged towards the best-ranked passages."""
    if not sentences:
        return []
    qvec = searcher.embed_query(to_simplified(question))
    mat = np.asarray(searcher.embedder.embed_batch([s.display_text for s in sentences],
                                                   "passage"), dtype=np.float32)
    scores = mat @ np.asarray(qvec, dtype=np.float32)
    bank = _reference_bank(searcher)
    if script_of(question) == "en" and len(bank):
        hub = top_k_mean(mat @ bank.T, HUB_K)
        dense = {h.rank: h.scores.get("dense", 0.0) for h in hits or []}
        prior = np.array([dense.get(s.passage, 0.0) for s in sentences], dtype=np.float32)
        scores = scores - EN_HUB_PENALTY * hub + EN_PASSAGE_PRIOR * prior
    return [replace(s, score=float(v)) for s, v in zip(sentences, scores, strict=True)]


def select(scored: list[Sentence], k: int) -> list[Sentence]:
    """The ``k`` best sentences, grouped by passage (best group first) and in document
    order within a passage, so a quote reads the way its source does."""
    best = sorted(scored, key=lambda s: (-s.score, s.passage, s.char_start))[:k]
    top_of: dict[int, float] = {}
    for s in best:
        top_of[s.passage] = max(top_of.get(s.passage, -np.inf), s.score)
    return sorted(best, key=lambda s: (-top_of[s.passage], s.passage, s.char_start))


def format_answer(sentences: list[Sentence]) -> str:
    """The quotes joined, each followed by its citation marker: ``…。[1] …。[3]``."""
    return " ".join(f"{s.display_text}[{s.passage}]" for s in sentences)


def answer(searcher: Searcher, question: str, top_k: int = 5,
           max_sentences: int = 3, mode: str = "auto") -> Answer:
    """Search (in ``mode``), then quote the best ``max_sentences`` sentences of the top
    passages; when the search says the corpus does not cover the question, say so and quote
    nothing."""
    started = time.perf_counter()
    if not isinstance(max_sentences, int) or isinstance(max_sentences, bool) \
            or not 1 <= max_sentences <= MAX_SENTENCES:
        raise InvalidRequest(f"max_sentences must be an integer from 1 to {MAX_SENTENCES}, "
                             f"got {max_sentences!r}")
    result = searcher.search(question, top_k, mode)
    lang = language_of(result.query)
    if result.answerable:
        chosen = select(score_sentences(searcher, result.query, candidates(result.hits),
                                        result.hits), max_sentences)
        text = format_answer(chosen) if chosen else NOT_COVERED[lang]
    else:
        chosen, text = [], NOT_COVERED[lang]
    return Answer(question=result.query, language=lang, text=text, sentences=chosen,
                  result=result, took_ms=(time.perf_counter() - started) * 1000.0)
