"""The streamed build: a small encoder window builds the same generation as a large one, the
encoders never see more than a window at a time, and the lexical pieces it streams into
(BM25 postings) score exactly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import qa.index.embedding as embedding
from qa.encoders.base import HashingEmbedder
from qa.encoders.ensemble import WithSecond
from qa.index.build import build_index
from qa.index.lexical import BM25Builder
from qa.index.manifest import current_generation

FILES = ["vectors.npy", "question_rows.npy", "hub_en.npy", "sentences.npy",
         "sentence_offsets.npy", "use_vectors.npy", "use_sentences.npy", "use_hub.npy",
         "use_vocab.npy"]


def _pair() -> WithSecond:
    return WithSecond(HashingEmbedder(), HashingEmbedder(dim=64))


def _rows(gen: Path) -> list[tuple]:
    with sqlite3.connect(gen / "chunks.sqlite") as db:
        return db.execute("SELECT * FROM chunks ORDER BY row").fetchall()


def test_a_small_window_builds_the_same_generation(tmp_path, corpus_dir, monkeypatch):
    whole = build_index(corpus_dir, tmp_path / "whole", _pair())
    monkeypatch.setattr(embedding, "WINDOW", 3)
    seen: list[tuple[int, int]] = []
    streamed = build_index(corpus_dir, tmp_path / "streamed", _pair(),
                           progress=lambda _stage, done, known: seen.append((done, known)))
    assert streamed.chunks == whole.chunks > 3
    assert (streamed.embedded, streamed.sentences_embedded, streamed.second_embedded) == \
        (whole.embedded, whole.sentences_embedded, whole.second_embedded)
    a, b = current_generation(tmp_path / "whole"), current_generation(tmp_path / "streamed")
    for name in FILES:
        np.testing.assert_allclose(np.load(b / name), np.load(a / name), atol=1e-6,
                                   err_msg=name)
    assert _rows(a) == _rows(b)
    # One progress report per window of 3 chunks; what is known is never behind what is done.
    assert len(seen) == -(-whole.chunks // 3)
    assert all(done <= known for done, known in seen)
    assert seen[-1][0] == seen[-1][1] == whole.embedded + whole.sentences_embedded


def test_the_encoder_never_sees_more_than_a_window(tmp_path, corpus_dir, monkeypatch):
    calls: list[int] = []
    emb = HashingEmbedder()

    def embed_passages(texts, progress=None):
        calls.append(len(texts))
        return emb.embed_batch(list(texts), "passage")

    monkeypatch.setattr(embedding, "WINDOW", 4)
    report = build_index(corpus_dir, tmp_path / "index", emb, sentence_vectors=False,
                         embed_passages=embed_passages)
    # Without sentence vectors a window's texts are its chunks: at most 4 at a time.
    assert max(calls) == 4 and sum(calls) == report.embedded == report.chunks
    assert len(calls) == -(-report.chunks // 4)


def test_the_report_times_every_stage(tmp_path, corpus_dir):
    report = build_index(corpus_dir, tmp_path / "index", _pair())
    for stage in ("read", "chunk+store", "embed", "embed-second", "vectors", "sentences",
                  "hubness", "second", "store+bm25", "files"):
        assert report.stages[stage] >= 0, stage
    assert sum(report.stages.values()) <= report.seconds + 0.05


def test_an_incremental_streamed_build_reuses_both_encoders_rows(tmp_path, corpus_dir,
                                                                 monkeypatch):
    index_dir = tmp_path / "index"
    build_index(corpus_dir, index_dir, _pair())
    first = current_generation(index_dir)
    (corpus_dir / "added.txt").write_text("光谷科技创新走廊建设加快推进。新增三个国家级平台。\n",
                                          encoding="utf-8")
    monkeypatch.setattr(embedding, "WINDOW", 2)
    report = build_index(corpus_dir, index_dir, _pair())
    assert report.added == ["added"] and len(report.unchanged) == 2
    assert report.embedded == 1 and report.second_embedded == 1 + report.sentences_embedded
    second = current_generation(index_dir)
    fresh = build_index(corpus_dir, tmp_path / "fresh", _pair())
    ref = current_generation(tmp_path / "fresh")
    assert fresh.chunks == report.chunks
    for name in FILES:
        np.testing.assert_allclose(np.load(second / name), np.load(ref / name), atol=1e-6,
                                   err_msg=name)
    assert _rows(second) == _rows(ref)
    assert first != second


def test_bm25_builder_scores_follow_the_formula():
    docs = [["武汉", "科技", "科技"], ["武汉", "光谷"], ["长江"]]
    builder = BM25Builder()
    for d in docs:
        builder.add(d)
    assert len(builder) == 3
    bm25 = builder.finish(k1=1.2, b=0.75)
    avgdl = sum(map(len, docs)) / 3
    idf = np.log1p((3 - 1 + 0.5) / (1 + 0.5))  # "科技": in one passage of three
    tf, dl = 2, 3
    want = idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))
    scores = bm25.scores(["科技"])
    assert scores[0] == pytest.approx(want, rel=1e-5) and scores[1] == scores[2] == 0
    assert bm25.top(["武汉"], 5)[0].tolist() == [1, 0]  # the shorter passage first
