"""English question words, translated into the corpus's own Chinese terms.

BM25 cannot match an English question against Chinese text: no token is shared. But the
second encoder (USE, trained on translation pairs) places a short English phrase next to its
Chinese rendering ("light source" -> 光源 0.90, "poverty" -> 致贫 0.84, "platform" -> 平台
0.91), so the corpus vocabulary, embedded once at indexing, is a dictionary built from the
corpus itself: each content word and phrase of the question is looked up among the corpus
terms, and its best matches above a similarity floor become weighted BM25 query terms.
Measured on XQuAD en->zh and the own English set (docs/EVAL.md, "Two encoders").
"""

from __future__ import annotations

import re

import numpy as np

# Function words and question scaffolding: they carry no content to translate.
STOP_WORDS = frozenset("""
a an the of in on at to for from by with about as into over under between through during
before after above below and or but nor so yet if then than that this these those there here
which what who whom whose when where why how is are was were be been being am do does did
doing done have has had having will would shall should can could may might must it its they
them their theirs he him his she her hers we us our ours you your yours i me my mine not no
yes all any some each every both either neither other another such same own more most less
least many much few very too also just only even still already again ever never always often
according said say says tell told give gives given make makes made want wants wanted aim aims
plan plans planned new main key major kind kinds type types way ways called like per via
within without toward towards upon onto off out up down refer refers mean means meant
""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9&'\-]*|\d+(?:\.\d+)?%?")
_QUOTED = re.compile(r"['\"‘“]([^'\"’”]{3,60})['\"’”]")
MAX_NGRAM = 3


def english_terms(query: str, max_terms: int = 24) -> list[str]:
    """Content words of an English question, with the phrases they form (runs of content
    words up to three long, and any quoted phrase whole), lower-cased, in order, once each."""
    runs: list[list[str]] = []
    run: list[str] = []
    for raw in _WORD.findall(query):
        word = raw.lower().strip("'")
        if word in STOP_WORDS or len(word) < 2:
            if run:
                runs.append(run)
            run = []
        else:
            run.append(word)
    if run:
        runs.append(run)
    out: list[str] = []
    for words in runs:
        for n in range(1, MAX_NGRAM + 1):
            out.extend(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
    # A quoted phrase is usually a named term ('nine cities as one city'): kept whole.
    out.extend(q.lower() for q in _QUOTED.findall(query) if len(q.split()) > 1)
    return list(dict.fromkeys(out))[:max_terms]


def nearest(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each row of a vector search's (scores, ids), ties (to 1e-6) broken
    by the lower id: engines order tied neighbours as they like (FAISS and Milvus do
    differently), so a caller that asks for a few more than ``k`` gets the same terms
    from either."""
    keys = np.where(ids >= 0, -np.round(sims.astype(np.float64), 6), np.inf)
    order = np.lexsort((np.where(ids >= 0, ids, np.iinfo(np.int64).max), keys), axis=1)[:, :k]
    return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)


def term_weights(sims: np.ndarray, ids: np.ndarray, columns: np.ndarray,
                 floor: float) -> dict[int, float]:
    """BM25 query weights from each English term's nearest corpus terms (``sims`` and
    ``ids``: one row per English term, as a vector index returns them): those at or above
    ``floor``, weighted by their similarity; a corpus term reached from several English
    terms keeps its best. ``columns`` maps a dictionary row to its BM25 column."""
    out: dict[int, float] = {}
    for row_s, row_i in zip(sims, ids, strict=True):
        for s, i in zip(row_s.tolist(), row_i.tolist(), strict=True):
            if i >= 0 and s >= floor and columns[i] >= 0:
                c = int(columns[i])
                out[c] = max(out.get(c, 0.0), s)
    return out


def weighted_bm25(weights_csc, idf: np.ndarray, k1: float,
                  terms: dict[int, float]) -> tuple[np.ndarray, float]:
    """Every passage's BM25 score for weighted query terms, and the bound of any passage's
    score (every term saturated), the scale the lexical leg is read in."""
    n = weights_csc.shape[0]
    out = np.zeros(n, dtype=np.float32)
    bound = 0.0
    for t, w in terms.items():
        lo, hi = weights_csc.indptr[t], weights_csc.indptr[t + 1]
        out[weights_csc.indices[lo:hi]] += w * weights_csc.data[lo:hi]
        bound += w * float(idf[t]) * (k1 + 1)
    return out, bound
