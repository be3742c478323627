"""Extractive answers: sentence splitting, exact offsets, markers, selection, the /answer
contract and its event stream. The fake embedder for everything but one real-model test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app
from qa.config import Settings
from qa.index.build import build_index
from qa.index.load import open_index
from qa.ingest.chunking import rejoin_lines
from qa.retrieve.answer import (
    NOT_COVERED,
    Sentence,
    answer,
    candidates,
    select,
    split_sentences,
)
from qa.retrieve.search import Searcher
from qa.types import Chunk, Hit
from tests.helpers import force_answerable, parse_sse

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
QUESTIONS = [json.loads(line) for line in
             (ROOT / "tests" / "data" / "corpus_questions.jsonl").read_text("utf-8").splitlines()]


def _sources() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in CORPUS.iterdir()
            if p.suffix in (".txt", ".md")}


SOURCES = _sources()


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, fake_embedder) -> Path:
    path = tmp_path_factory.mktemp("answer") / "index"
    build_index(CORPUS, path, fake_embedder)
    return path


@pytest.fixture(scope="module")
def searcher(index_dir: Path, fake_embedder) -> Searcher:
    return force_answerable(Searcher(open_index(index_dir, fake_embedder), fake_embedder))


@pytest.fixture(scope="module")
def client(index_dir: Path, fake_embedder) -> Iterator[TestClient]:
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir, embedder="hashing",
                        allow_download=False)
    app = create_app(settings, embedder=fake_embedder, background=False)
    with TestClient(app) as c:
        force_answerable(app.state.qa.searcher)
        yield c


# -- sentences ---------------------------------------------------------------------------


def test_split_sentences_keeps_exact_spans_and_closers() -> None:
    text = "  全会指出,要“扭住发展”。他说:“好!”第三句；最后没有句号\n"
    spans = split_sentences(text, offset=100)
    parts = [text[a - 100:b - 100] for a, b in spans]
    assert parts == ["全会指出,要“扭住发展”。", "他说:“好!”", "第三句；", "最后没有句号"]
    assert spans[0][0] == 102  # leading spaces excluded, offsets shifted


def test_split_sentences_does_not_split_at_line_breaks() -> None:
    text = "一句话被\n折成两行。下一句?"
    assert [text[a:b] for a, b in split_sentences(text)] == ["一句话被\n折成两行。", "下一句?"]
    assert rejoin_lines("一句话被\n折成两行。") == "一句话被折成两行。"
    assert rejoin_lines("two words\nbroken here.") == "two words broken here."


def _chunk(doc: str, start: int, end: int, window: int = 0) -> Chunk:
    text = SOURCES[doc][start:end]
    return Chunk(chunk_id=f"{doc}#x{window}", doc_id=doc, paragraph=7, window=window,
                 char_start=start, char_end=end, text=text, clean_text=text)


def test_overlapping_windows_do_not_repeat_a_sentence() -> None:
    doc = "wuhan-9th-plenary-digest-2020-06-28"
    spans = split_sentences(SOURCES[doc])
    a, b, c = spans[10], spans[11], spans[12]
    hits = [Hit(rank=1, score=1.0, chunk=_chunk(doc, a[0], b[1]), title="t", date=None,
                citation="c"),
            Hit(rank=2, score=0.9, chunk=_chunk(doc, b[0], c[1], 1), title="t", date=None,
                citation="c")]
    found = candidates(hits)
    keys = [(s.char_start, s.char_end) for s in found]
    assert len(keys) == len(set(keys))
    shared = next(s for s in found if (s.char_start, s.char_end) == b)
    assert shared.passage == 1  # credited to the better-ranked passage
    for s in found:
        assert SOURCES[doc][s.char_start:s.char_end] == s.text


def test_select_groups_by_passage_in_document_order() -> None:
    def s(passage: int, start: int, score: float) -> Sentence:
        return Sentence(text="x", display_text="x", doc_id="d", paragraph=1, passage=passage,
                        char_start=start, char_end=start + 1, score=score)

    chosen = select([s(2, 50, 0.9), s(1, 10, 0.5), s(2, 20, 0.7), s(1, 5, 0.8),
                     s(3, 0, 0.1)], 4)
    assert [(x.passage, x.char_start) for x in chosen] == [(2, 20), (2, 50), (1, 5), (1, 10)]


# -- answers over the shipped corpus -----------------------------------------------------


def test_quotes_reproduce_the_source_for_every_question(searcher: Searcher) -> None:
    quoted = 0
    for q in QUESTIONS:
        ans = answer(searcher, q["question"], top_k=5, max_sentences=3)
        assert ans.answerable and 1 <= len(ans.sentences) <= 3, q["id"]
        hits = ans.result.hits
        for s in ans.sentences:
            quoted += 1
            assert SOURCES[s.doc_id][s.char_start:s.char_end] == s.text, (q["id"], s)
            passage = hits[s.passage - 1].chunk
            assert passage.doc_id == s.doc_id
            assert passage.char_start <= s.char_start < s.char_end <= passage.char_end
            assert f"{s.display_text}[{s.passage}]" in ans.text
        assert len({(s.doc_id, s.char_start) for s in ans.sentences}) == len(ans.sentences)
    assert quoted >= 2 * len(QUESTIONS)


def test_sentences_are_scored_against_the_question(searcher: Searcher) -> None:
    ans = answer(searcher, "院士引领高端产业发展行动计划", max_sentences=1)
    assert "院士" in ans.sentences[0].text
    # A Chinese question's sentence score is the cosine of question and sentence, exactly.
    quoted = answer(searcher, "院士 高校 创新资源", max_sentences=5).sentences
    emb = searcher.embedder
    q = emb.embed_batch(["院士 高校 创新资源"], "query")[0]
    for s in quoted:
        assert abs(s.score - float(emb.embed_batch([s.display_text], "passage")[0] @ q)) < 1e-5


@pytest.mark.parametrize("question, lang", [("武汉2023年的GDP总量是多少?", "zh"),
                                            ("What was Wuhan's GDP in 2023?", "en")])
def test_not_answerable_says_so_in_the_question_language(index_dir, fake_embedder,
                                                         question, lang) -> None:
    strict = force_answerable(Searcher(open_index(index_dir, fake_embedder), fake_embedder),
                              False)
    ans = answer(strict, question)
    assert not ans.answerable
    assert ans.sentences == [] and ans.text == NOT_COVERED[lang]


# -- HTTP --------------------------------------------------------------------------------


def test_answer_contract(client: TestClient) -> None:
    r = client.post("/answer", json={"question": "光谷科技创新大走廊", "top_k": 4,
                                     "max_sentences": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"question", "answer", "sentences", "passages", "answerable", "confidence",
            "took_ms"} <= set(body)
    assert body["answerable"] and len(body["passages"]) == 4 and len(body["sentences"]) == 2
    search = client.post("/search", json={"query": "光谷科技创新大走廊", "top_k": 4}).json()
    assert [p["chunk_id"] for p in body["passages"]] == [p["chunk_id"]
                                                         for p in search["results"]]
    assert set(search["results"][0]) <= set(body["passages"][0])
    for s in body["sentences"]:
        assert {"text", "passage", "doc_id", "char_start", "char_end", "score"} <= set(s)
        p = body["passages"][s["passage"] - 1]
        assert p["doc_id"] == s["doc_id"]
        assert SOURCES[s["doc_id"]][s["char_start"]:s["char_end"]] == s["text"]
        assert f"[{s['passage']}]" in body["answer"]
    assert body["generated"] is None and body["warnings"] == []


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_answer_searches_in_the_mode_asked(client: TestClient, mode: str) -> None:
    question = "光谷科技创新大走廊"
    body = client.post("/answer", json={"question": question, "mode": mode}).json()
    search = client.post("/search", json={"query": question, "mode": mode}).json()
    assert [p["chunk_id"] for p in body["passages"]] == [p["chunk_id"]
                                                         for p in search["results"]]
    assert [p["scores"] for p in body["passages"]] == [p["scores"] for p in search["results"]]


def test_answer_when_not_answerable_quotes_nothing(index_dir, fake_embedder) -> None:
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir, embedder="hashing",
                        allow_download=False)
    with TestClient(create_app(settings, embedder=fake_embedder, background=False)) as c:
        force_answerable(c.app.state.qa.searcher, False)
        body = c.post("/answer", json={"question": "What was Wuhan's GDP in 2023?"}).json()
    assert body["answerable"] is False and body["sentences"] == []
    assert body["answer"] == NOT_COVERED["en"] and body["passages"]


@pytest.mark.parametrize("payload", [
    {"question": ""}, {"question": "   "}, {"question": "武" * 2001},
    {"question": "武汉", "max_sentences": 0}, {"question": "武汉", "max_sentences": 11},
    {"question": "武汉", "top_k": 0}, {"question": "武汉", "stream": "sometimes"},
    {"question": "武汉", "unexpected": 1}, {"question": "武汉", "mode": "fuzzy"}, {},
])
def test_bad_answer_input_is_a_clear_422(client: TestClient, payload) -> None:
    r = client.post("/answer", json=payload)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"


def test_answer_before_the_index_exists_is_503(tmp_path: Path, fake_embedder) -> None:
    settings = Settings(corpus_dir=CORPUS, index_dir=tmp_path / "none", embedder="hashing")
    with TestClient(create_app(settings, embedder=fake_embedder, background=False)) as c:
        r = c.post("/answer", json={"question": "武汉"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "index_not_ready"


def test_answer_stream(client: TestClient) -> None:
    payload = {"question": "织密城市应急处置五张网", "max_sentences": 3}
    plain = client.post("/answer", json=payload).json()
    with client.stream("POST", "/answer", json={**payload, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.read().decode("utf-8"))
    names = [e for e, _ in events]
    assert names == ["passages"] + ["answer"] * len(plain["sentences"]) + ["done"]
    assert events[0][1]["passages"] == plain["passages"]
    streamed = "".join(d["delta"] for e, d in events if e == "answer")
    assert streamed == plain["answer"]
    assert [d["sentence"] for e, d in events if e == "answer"] == plain["sentences"]
    done = events[-1][1]
    assert {k: v for k, v in done.items() if k != "took_ms"} == \
        {k: v for k, v in plain.items() if k != "took_ms"}


def test_stream_errors_before_streaming_are_plain_json(client: TestClient) -> None:
    r = client.post("/answer", json={"question": "", "stream": True})
    assert r.status_code == 422 and r.headers["content-type"] == "application/json"


# -- the real model: English and Chinese questions get the right Chinese sentence ---------


@pytest.mark.model
@pytest.mark.parametrize("question, evidence", [
    # Answered since the English confidence is fitted on standardised features (the first
    # two-encoder fit flagged it at 0.46; docs/EVAL.md, "No-answer signal for English").
    ("How will Wuhan tackle the 'post-epidemic syndrome' and long-standing grievances?",
     "切实化解“疫后综合症”"),
    ("How many academicians does Wuhan have?", "71名院士"),
    ("在科技创新方面,湖北省委明确支持武汉争创哪两个国家级中心?",
     "省委明确支持武汉创建国家科技创新中心"),
], ids=["en", "en-short", "zh"])
def test_real_model_quotes_the_right_sentence(real_index_dir, real_embedder, question,
                                              evidence) -> None:
    settings = Settings(corpus_dir=CORPUS, index_dir=real_index_dir, allow_download=False)
    with TestClient(create_app(settings, embedder=real_embedder, background=False)) as c:
        body = c.post("/answer", json={"question": question, "max_sentences": 3}).json()
    assert body["answerable"], body
    texts = [s["text"].replace("\n", "") for s in body["sentences"]]
    assert any(evidence in t for t in texts), texts
    for s in body["sentences"]:
        assert SOURCES[s["doc_id"]][s["char_start"]:s["char_end"]] == s["text"]
