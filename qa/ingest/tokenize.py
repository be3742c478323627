"""Lexical tokenization for Chinese and English: script detection, Traditional->Simplified
and full-width->half-width normalisation, then jieba word segmentation.

BM25 over unsegmented Chinese silently fails (a whole sentence becomes one "word"), which
is the most common defect of peer systems; everything lexical goes through here.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_RE = re.compile(r"[A-Za-z]")
_WORD_RE = re.compile(r"[\w\u3400-\u4dbf\u4e00-\u9fff]", re.UNICODE)

# Function words that carry no retrieval signal; kept short on purpose, since in policy
# text even common-looking words ("发展", "建设") discriminate between paragraphs via IDF.
STOPWORDS = frozenset(
    """的 了 和 与 及 或 是 在 对 为 以 将 把 被 由 于 从 向 也 都 而 并 等 之 其 这 那 有 着 个 中 上 下
    吗 呢 吧 啊 么 什么 哪些 哪个 如何 怎么 怎样 多少 几 请问 请 问 是否 有没有 我们 你们 他们 它 我 你 他
    the a an of to in on for and or is are was were be been by with as at from that this what which who
    whom how when where why does do did can could will would should about into its it their there""".split()
)


def script_of(text: str) -> str:
    """'zh', 'en' or 'mixed', from the share of CJK characters among letters."""
    cjk = len(_CJK_RE.findall(text))
    latin = len(_LATIN_RE.findall(text))
    if cjk == 0 and latin == 0:
        return "zh"
    if cjk >= 2 * latin:
        return "zh"
    if latin >= 4 * max(cjk, 1) or cjk == 0:
        return "en"
    return "mixed"


@lru_cache(maxsize=1)
def _t2s():
    try:
        import opencc
    except ImportError:  # the fallback leaves Traditional text as it is
        return None
    return opencc.OpenCC("t2s.json")


def to_simplified(text: str) -> str:
    """Traditional -> Simplified only (no case or width folding): what the embedder sees of a
    Traditional-Chinese question over a Simplified corpus."""
    conv = _t2s()
    if conv is None or not _CJK_RE.search(text):
        return text
    return conv.convert(text)


def normalize(text: str) -> str:
    """NFKC (full-width -> half-width), Traditional -> Simplified, lower case."""
    text = unicodedata.normalize("NFKC", text)
    conv = _t2s()
    if conv is not None and _CJK_RE.search(text):
        text = conv.convert(text)
    return text.lower()


_JIEBA_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _jieba_with(user_words: tuple[str, ...]):
    """An initialised jieba tokenizer with these extra words, shared: loading jieba's
    dictionary costs about half a second, and a tokenizer is read-only once built."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    with _JIEBA_LOCK:
        tok = jieba.Tokenizer()
        tok.initialize()
        for w in user_words:
            tok.add_word(w, freq=2000)
    return tok


class Tokenizer:
    """jieba segmentation in search mode (words and their sub-words), with an optional
    domain dictionary; one instance per index so that dictionaries never leak between them."""

    def __init__(self, user_words: Iterable[str] = ()) -> None:
        self.user_words = tuple(sorted(set(user_words)))
        self._jieba = _jieba_with(self.user_words)

    def __call__(self, text: str) -> list[str]:
        tokens = []
        for tok in self._jieba.cut_for_search(normalize(text), HMM=True):
            tok = tok.strip()
            if not tok or tok in STOPWORDS or not _WORD_RE.search(tok):
                continue
            tokens.append(tok)
        return tokens


_QUOTED = re.compile(r"[“「『\"]([\u4e00-\u9fff0-9A-Za-z]{2,10})[”」』\"]")


def mine_terms(texts: Iterable[str], min_len: int = 3) -> list[str]:
    """Domain terms coined in policy text and marked by quotes (“光芯屏端网”, “一主引领”):
    jieba cuts them apart, so they become user-dictionary words for the whole index."""
    terms: set[str] = set()
    for text in texts:
        for m in _QUOTED.finditer(text):
            term = normalize(m.group(1))
            if len(term) >= min_len and _CJK_RE.search(term):
                terms.add(term)
    return sorted(terms)
