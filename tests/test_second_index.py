"""The second encoder in the index: stored beside the first, fingerprinted, never mixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qa.encoders.base import HashingEmbedder
from qa.encoders.ensemble import WithSecond
from qa.errors import IndexMismatch
from qa.index.build import build_index
from qa.index.load import open_index
from qa.index.manifest import current_generation
from qa.retrieve.search import Searcher

FIRST = HashingEmbedder()


def _pair(dim: int = 64) -> WithSecond:
    return WithSecond(FIRST, HashingEmbedder(dim=dim))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    from .conftest import CORPUS

    index_dir = tmp_path_factory.mktemp("second") / "index"
    report = build_index(CORPUS, index_dir, _pair())
    return index_dir, report


def test_the_generation_stores_the_second_encoders_vectors(built):
    index_dir, report = built
    gen = current_generation(index_dir)
    manifest = json.loads((gen / "manifest.json").read_text("utf-8"))
    assert manifest["second"]["fingerprint"] == "hashing-fake-64-v1"
    assert manifest["model"]["fingerprint"] == FIRST.fingerprint
    vecs = np.load(gen / "use_vectors.npy")
    assert vecs.shape == (report.chunks, 64)
    assert (gen / "use_vectors.faiss").exists() and (gen / "use_hub.npy").exists()
    # Row r is chunk r's passage, as for the first encoder.
    idx = open_index(index_dir, _pair())
    chunks = idx.store.get([0, 7, report.chunks - 1])
    expect = HashingEmbedder(dim=64).embed_batch([chunks[r].clean_text for r in sorted(chunks)],
                                                 "passage")
    assert np.allclose(vecs[sorted(chunks)], expect, atol=1e-6)
    sents = np.load(gen / "use_sentences.npy")
    assert len(sents) == int(np.load(gen / "sentence_offsets.npy")[-1])
    terms = json.loads((gen / "use_vocab.json").read_text("utf-8"))
    assert terms and all(len(t) >= 2 for t in terms)
    assert len(np.load(gen / "use_vocab.npy")) == len(terms) == manifest["second"]["vocab"]["count"]


def test_loading_refuses_another_second_encoder(built):
    index_dir, _ = built
    with pytest.raises(IndexMismatch, match="second encoder.*qa index"):
        open_index(index_dir, _pair(dim=32))


def test_a_service_without_a_second_encoder_ignores_its_vectors(built):
    index_dir, _ = built
    idx = open_index(index_dir, FIRST)
    assert idx.second is None
    assert Searcher(idx, FIRST).search("What about the light source?").hits


def test_an_index_without_them_is_refused_by_a_service_with_one(tmp_path: Path):
    from .conftest import CORPUS

    build_index(CORPUS, tmp_path / "index", FIRST)
    with pytest.raises(IndexMismatch, match="none"):
        open_index(tmp_path / "index", _pair())


def test_changing_the_set_of_encoders_re_embeds_everything(corpus_dir: Path, tmp_path: Path):
    index_dir = tmp_path / "index"
    first = build_index(corpus_dir, index_dir, _pair())
    assert first.second_embedded > first.chunks
    same = build_index(corpus_dir, index_dir, _pair())
    assert same.embedded == 0 and same.second_embedded == 0
    dropped = build_index(corpus_dir, index_dir, FIRST)
    assert dropped.embedded == dropped.chunks and dropped.second_embedded == 0
    gen = current_generation(index_dir)
    assert json.loads((gen / "manifest.json").read_text("utf-8"))["second"] is None
    assert not (gen / "use_vectors.npy").exists()
    back = build_index(corpus_dir, index_dir, _pair())
    assert back.embedded == back.chunks
    other = build_index(corpus_dir, index_dir, _pair(dim=32))
    assert other.embedded == other.chunks


def test_an_added_document_keeps_the_others_second_vectors(corpus_dir: Path, tmp_path: Path):
    index_dir = tmp_path / "index"
    build_index(corpus_dir, index_dir, _pair())
    before = np.load(current_generation(index_dir) / "use_vectors.npy")
    before_s = np.load(current_generation(index_dir) / "use_sentences.npy")
    (corpus_dir / "zz-new.txt").write_text("光源建设取得新进展。重力测量设施开工。\n\n第二段。\n",
                                           encoding="utf-8")
    report = build_index(corpus_dir, index_dir, _pair())
    assert report.added == ["zz-new"] and report.embedded == 2
    gen = current_generation(index_dir)
    after = np.load(gen / "use_vectors.npy")
    # The new document sorts last: the others' rows, and their sentences, are unchanged.
    assert np.array_equal(after[:len(before)], before)
    assert np.array_equal(np.load(gen / "use_sentences.npy")[:len(before_s)], before_s)
    assert report.second_embedded == 2 + 2  # two passages, the first one's two sentences
    fresh = HashingEmbedder(dim=64).embed_batch(["第二段。"], "passage")[0]
    assert np.allclose(after[-1], fresh, atol=1e-6)


def test_search_with_the_second_encoder(built):
    index_dir, _ = built
    pair = _pair()
    searcher = Searcher(open_index(index_dir, pair), pair)
    assert searcher.second is not None
    for mode in ("auto", "dense", "hybrid"):  # lexical: BM25 has no English tokens to match
        res = searcher.search("Which pollutants will Wuhan control together?", 5, mode)
        assert len(res.hits) == 5 and [h.rank for h in res.hits] == [1, 2, 3, 4, 5]
    doc = searcher.index.store.get([0])[0].doc_id
    res = searcher.search("What about the light source?", 5, "auto", [doc])
    assert res.hits and {h.chunk.doc_id for h in res.hits} == {doc}


def test_chinese_questions_are_unchanged_by_default(built):
    index_dir, _ = built
    pair = _pair()
    with_second = Searcher(open_index(index_dir, pair), pair)
    without = Searcher(open_index(index_dir, FIRST), FIRST)
    q = "武汉城市圈大气污染联防联控"
    a, b = with_second.search(q, 10), without.search(q, 10)
    assert [h.chunk.chunk_id for h in a.hits] == [h.chunk.chunk_id for h in b.hits]
    assert a.confidence == pytest.approx(b.confidence)


class _Counting(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=64)
        self.calls: list[list[str]] = []

    def embed_batch(self, texts, kind):
        self.calls.append(list(texts))
        return super().embed_batch(texts, kind)


def test_an_english_question_and_its_words_take_one_second_encoder_call(built, monkeypatch):
    index_dir, _ = built
    second = _Counting()
    pair = WithSecond(FIRST, second)
    searcher = Searcher(open_index(index_dir, pair), pair)
    q = "Which pollutants will Wuhan control together?"
    overlapped = searcher.search(q, 10)
    assert len(second.calls) == 1 and second.calls[0][0] == q and len(second.calls[0]) > 1
    searcher.search(q, 10)
    assert len(second.calls) == 1  # cached
    # Run in the request's own thread instead of beside the first encoder: the same result.
    from qa.retrieve.second import SecondView

    monkeypatch.setattr(SecondView, "begin", lambda self, *a: None)
    fresh = Searcher(open_index(index_dir, pair), pair)
    inline = fresh.search(q, 10)
    assert len(second.calls) == 2
    assert [h.chunk.chunk_id for h in inline.hits] == [h.chunk.chunk_id for h in overlapped.hits]
    assert inline.confidence == pytest.approx(overlapped.confidence)
    assert fresh.search("武汉城市圈大气污染联防联控", 5).hits and len(second.calls) == 2
