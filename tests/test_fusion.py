"""Fusing the second encoder: pure functions over hand-made score arrays."""

from __future__ import annotations

import numpy as np
import pytest

from qa.index.lexical import BM25Index
from qa.retrieve.fusion import SecondParams, add_leg, chunk_scores, fuse, top_rows, zscore
from qa.retrieve.translate import english_terms, term_weights, weighted_bm25


def test_zscore_centres_and_scales():
    z = zscore(np.array([1.0, 2.0, 3.0]))
    assert np.allclose(z, [-1.2247449, 0.0, 1.2247449], atol=1e-6)
    assert np.allclose(zscore(np.array([0.5, 0.5, 0.5])), 0.0)  # no opinion, no NaN
    assert zscore(np.array([])).size == 0


def test_fuse_is_in_the_primary_units_and_ranks_like_a_z_sum():
    primary = np.array([0.80, 0.82, 0.78, 0.81], np.float32)
    second = np.array([0.10, 0.20, 0.60, 0.30], np.float32)
    fused = fuse(primary, second, 0.5)
    expected = primary + 0.5 * primary.std() * (second - second.mean()) / second.std()
    assert np.allclose(fused, expected, atol=1e-6)
    z_sum = zscore(primary) + 0.5 * zscore(second)
    assert list(np.argsort(-fused)) == list(np.argsort(-z_sum))


def test_fuse_scale_of_the_second_encoder_does_not_matter():
    primary = np.array([0.80, 0.82, 0.78, 0.81], np.float32)
    second = np.array([0.10, 0.20, 0.60, 0.30], np.float32)
    assert np.allclose(fuse(primary, second, 0.7), fuse(primary, 10 * second - 3, 0.7),
                       atol=1e-5)


def test_fuse_can_change_the_winner_and_weight_zero_cannot():
    primary = np.array([0.83, 0.82, 0.70], np.float32)
    second = np.array([0.10, 0.60, 0.05], np.float32)
    assert int(np.argmax(fuse(primary, second, 1.0))) == 1
    assert np.array_equal(fuse(primary, second, 0.0), primary)
    assert np.array_equal(fuse(primary[:1], second[:1], 1.0), primary[:1])
    with pytest.raises(ValueError, match="shape"):
        fuse(primary, second[:2], 0.5)


def test_weights_by_language():
    p = SecondParams(weight_en=0.6, weight_zh=0.1)
    assert p.weight(True) == 0.6 and p.weight(False) == 0.1
    assert SecondParams().weight(False) == 0.0  # the measured default leaves Chinese alone


def test_chunk_scores_match_brute_force():
    rng = np.random.default_rng(0)
    para = rng.normal(size=(5, 8)).astype(np.float32)
    counts = np.array([1, 3, 2, 1, 4])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    sents = rng.normal(size=(int(counts.sum()), 8)).astype(np.float32)
    q = rng.normal(size=8).astype(np.float32)
    expect = np.array([0.4 * (para[r] @ q) + 0.6 * max(sents[offsets[r]:offsets[r + 1]] @ q)
                       for r in range(5)])
    assert np.allclose(chunk_scores(q, para, None, sents, offsets, 0.6), expect, atol=1e-5)
    rows = np.array([4, 1, 3])
    assert np.allclose(chunk_scores(q, para, rows, sents, offsets, 0.6), expect[rows], atol=1e-5)
    assert np.allclose(chunk_scores(q, para, rows), para[rows] @ q, atol=1e-6)


def test_top_rows_and_add_leg():
    assert set(top_rows(np.array([0.1, 0.9, 0.5, 0.7]), 2).tolist()) == {1, 3}
    assert set(top_rows(np.array([0.1, 0.9]), 5).tolist()) == {0, 1}
    assert add_leg({1: 1.0, 2: 0.5}, {2: 1.0, 9: 5.0}, 0.1) == {1: 1.0, 2: 0.6}
    assert add_leg({1: 1.0}, {}, 0.1) == {1: 1.0}


def test_english_terms_keep_content_words_phrases_and_quotes():
    terms = english_terms("What does the 'nine cities as one city' idea involve?")
    assert "nine cities" in terms and "nine cities as one city" in terms
    assert not {"what", "does", "the", "as"} & set(terms)
    assert english_terms("Which pollutants will Wuhan control?")[:3] == [
        "pollutants", "wuhan", "control"]
    assert english_terms("What is it?") == []


def test_term_weights_take_the_best_above_the_floor():
    sims = np.array([[0.9, 0.65, 0.2], [0.7, 0.61, -1.0]], np.float32)
    ids = np.array([[0, 1, 2], [1, 0, -1]])
    columns = np.array([10, 11, 12])
    assert term_weights(sims, ids, columns, 0.6) == pytest.approx({10: 0.9, 11: 0.7})


def test_weighted_bm25_with_unit_weights_is_bm25():
    docs = [["光源", "建设"], ["重力", "测量", "光源"], ["污染", "控制"]]
    bm25 = BM25Index.build(docs)
    cols = {bm25.vocab["光源"]: 1.0, bm25.vocab["重力"]: 1.0}
    scores, bound = weighted_bm25(bm25.weights, bm25.idf, bm25.k1, cols)
    assert np.allclose(scores, bm25.scores(["光源", "重力"]), atol=1e-6)
    assert bound == pytest.approx(bm25.max_score(["光源", "重力"]))
    half, _ = weighted_bm25(bm25.weights, bm25.idf, bm25.k1, {bm25.vocab["重力"]: 0.5})
    assert half[1] == pytest.approx(0.5 * bm25.scores(["重力"])[1])
