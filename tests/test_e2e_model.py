"""End to end with the real offline model over the shipped corpus, through POST /search."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app
from qa.config import Settings

from .conftest import CORPUS

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def client(real_index_dir, real_embedder):
    settings = Settings(corpus_dir=CORPUS, index_dir=real_index_dir, allow_download=False)
    with TestClient(create_app(settings, embedder=real_embedder, background=False)) as c:
        yield c


def _source(doc_id: str) -> str:
    path = next(p for p in CORPUS.iterdir() if p.stem == doc_id and p.suffix != ".json")
    return path.read_bytes().decode("utf-8")


@pytest.mark.parametrize("query, evidence", [
    ("武汉有多少名院士?", "71名院士"),
    ("How many academicians does Wuhan have?", "71名院士"),
    ("市生态环境局将如何抢抓全国碳排放权交易市场的机遇?", "全国碳排放权交易市场上线交易启动"),
    ("What will the ecology and environment bureau do about carbon emissions trading?",
     "全国碳排放权交易市场上线交易启动"),
    ("武漢城市圈同城化發展的工作思路是什麼?", "建好“一圈”,引领“一群”,联动“一带”"),
])
def test_the_right_paragraph_is_in_the_top_5(client, query, evidence):
    r = client.post("/search", json={"query": query, "top_k": 5})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    texts = [p["text"] for p in results]
    assert any(evidence in t for t in texts), (query, [p["citation"] for p in results])
    for p in results:  # every citation reproduces its text from the source file
        assert _source(p["doc_id"])[p["char_start"]:p["char_end"]] == p["text"]


def test_speaker_and_date_in_citation(client):
    r = client.post("/search", json={"query": "市经信局在推进制造业转型方面有什么举措?",
                                     "top_k": 3}).json()
    top = r["results"][0]
    assert top["speaker"] == "党蓁"
    assert "党蓁(市经济和信息化局局长)" in top["citation"] and "2021-07-26" in top["citation"]


def test_unrelated_question_is_flagged(client):
    r = client.post("/search", json={"query": "巴黎今天的天气怎么样?"}).json()
    assert r["answerable"] is False and r["confidence"] < 0.5
    r = client.post("/search", json={"query": "武汉有多少名院士?"}).json()
    assert r["answerable"] is True and r["confidence"] > 0.5
