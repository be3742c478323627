"""The two-encoder search with the real models (e5 + USE) over the shipped corpus."""

from __future__ import annotations

import pytest

from qa.index.load import open_index
from qa.retrieve.search import Searcher

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def searchers(real_index_dir, real_embedder):
    """The default service stack (both encoders), and the same index read by e5 alone."""
    both = Searcher(open_index(real_index_dir, real_embedder), real_embedder)
    first = real_embedder.primary
    alone = Searcher(open_index(real_index_dir, first), first)
    yield both, alone
    both.index.store.close()
    alone.index.store.close()


def _rank(searcher: Searcher, query: str, evidence: str) -> int | None:
    hits = searcher.search(query, top_k=10).hits
    return next((h.rank for h in hits if evidence in h.chunk.text), None)


def test_the_default_stack_has_the_second_encoder(searchers):
    both, alone = searchers
    assert both.second is not None and alone.second is None
    assert both.index.manifest["second"]["id"] == "use-multilingual-v3"


@pytest.mark.parametrize("query, evidence", [
    ("How will Wuhan keep people lifted out of poverty from falling back into it?",
     "构建防止低收入人口致贫和已脱贫人口返贫动态监测和帮扶机制"),
    ("Which major science facilities, such as precision gravity measurement or the Wuhan "
     "light source, are being advanced?", "加快推进精密重力测量等设施的建设和武汉光源"),
])
def test_an_english_question_finds_its_passage_first_with_both_encoders(searchers, query,
                                                                        evidence):
    both, alone = searchers
    assert _rank(both, query, evidence) == 1
    assert (_rank(alone, query, evidence) or 99) > 1  # what e5 alone did with it


def test_english_words_are_translated_into_corpus_terms(searchers):
    both, _ = searchers
    translated, found = both.second.translated("Wuhan light source and gravity", 5, None)
    assert translated and found["translated_share"] == 1.0
    terms = [both.index.store.get([r])[r].text for r in translated]
    assert any("光源" in t for t in terms)


def test_english_no_answer_uses_the_second_encoder(searchers):
    both, _ = searchers
    off = both.search("How do I bake sourdough bread?")
    on = both.search("How many academicians does Wuhan have?")
    assert "second_best" in off.diagnostics and "translated_share" in off.diagnostics
    assert off.answerable is False and on.answerable is True


def test_chinese_questions_do_not_use_it(searchers):
    both, alone = searchers
    q = "武汉城市圈同城化发展的工作思路是什么?"
    a, b = both.search(q, top_k=10), alone.search(q, top_k=10)
    assert [h.chunk.chunk_id for h in a.hits] == [h.chunk.chunk_id for h in b.hits]
    assert "second_best" not in a.diagnostics
