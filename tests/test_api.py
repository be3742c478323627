from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app
from qa.index.build import build_index

DIGEST = "wuhan-9th-plenary-digest-2020-06-28"
RESULT_FIELDS = {"rank", "score", "doc_id", "title", "paragraph", "char_start", "char_end",
                 "section", "speaker", "text", "citation"}


@pytest.fixture
def client(settings, fake_embedder):
    build_index(settings.corpus_dir, settings.index_dir, fake_embedder)
    with TestClient(create_app(settings, embedder=fake_embedder, background=False)) as c:
        yield c


def _error(resp, status, code=None):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_post_search_contract(client, settings):
    r = client.post("/search", json={"query": "光芯屏端网", "top_k": 3})
    assert r.status_code == 200
    body = r.json()
    assert {"query", "mode", "took_ms", "results", "answerable", "confidence"} <= set(body)
    assert body["mode"] == "auto" and len(body["results"]) == 3
    assert [p["rank"] for p in body["results"]] == [1, 2, 3]
    top = body["results"][0]
    assert RESULT_FIELDS <= set(top)
    source = (settings.corpus_dir / (top["doc_id"] + ".txt"))
    if not source.exists():
        source = source.with_suffix(".md")
    assert source.read_text(encoding="utf-8")[top["char_start"]:top["char_end"]] == top["text"]
    assert top["citation"].startswith("《") and f"第{top['paragraph']}段" in top["citation"]


def test_get_search_matches_post(client):
    a = client.get("/search", params={"q": "院士", "top_k": 2, "mode": "lexical"}).json()
    b = client.post("/search", json={"query": "院士", "top_k": 2, "mode": "lexical"}).json()
    assert [p["chunk_id"] for p in a["results"]] == [p["chunk_id"] for p in b["results"]]


@pytest.mark.parametrize("mode", ["auto", "hybrid", "dense", "lexical"])
def test_every_mode_answers(client, mode):
    r = client.post("/search", json={"query": "武汉有多少名院士", "mode": mode})
    assert r.status_code == 200 and r.json()["mode"] == mode


def test_doc_filter(client):
    r = client.post("/search", json={"query": "武汉", "top_k": 10, "doc_ids": [DIGEST]})
    assert {p["doc_id"] for p in r.json()["results"]} == {DIGEST}
    _error(client.post("/search", json={"query": "武汉", "doc_ids": ["nope"]}), 404,
           "unknown_document")


@pytest.mark.parametrize("body, status", [
    ({"query": ""}, 422),
    ({"query": "   \n\t"}, 422),
    ({"query": "武" * 2001}, 422),
    ({"query": "武汉", "top_k": 0}, 422),
    ({"query": "武汉", "top_k": 51}, 422),
    ({"query": "武汉", "top_k": "many"}, 422),
    ({"query": "武汉", "mode": "semantic"}, 422),
    ({"query": 42}, 422),
    ({}, 422),
    ({"query": "武汉", "unexpected": 1}, 422),
])
def test_bad_search_input_is_a_clear_4xx(client, body, status):
    _error(client.post("/search", json=body), status)


def test_malformed_and_oversized_bodies(client, settings):
    _error(client.post("/search", content='{"query": "武汉"'.encode(),
                       headers={"content-type": "application/json"}), 400, "malformed_json")
    big = b'{"query": "' + b"a" * (settings.max_body_bytes + 10) + b'"}'
    _error(client.post("/search", content=big, headers={"content-type": "application/json"}),
           413, "payload_too_large")
    _error(client.get("/search"), 422)
    _error(client.get("/search", params={"q": "武汉", "top_k": 99}), 422)
    _error(client.get("/nowhere"), 404)
    _error(client.delete("/search"), 405)


def test_documents(client):
    docs = client.get("/documents").json()["documents"]
    assert {d["doc_id"] for d in docs} >= {DIGEST}
    one = next(d for d in docs if d["doc_id"] == DIGEST)
    assert one["date"] == "2020-06-28" and one["title"] and one["paragraph_count"] > 10
    detail = client.get(f"/documents/{DIGEST}").json()
    assert detail["doc_id"] == DIGEST
    paras = detail["paragraphs"]
    assert [p["paragraph"] for p in paras] == list(range(1, len(paras) + 1))
    _error(client.get("/documents/nope"), 404, "unknown_document")


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["chunks"] > 50 and ready.json()["model"] == "hashing-fake"
    assert client.get("/openapi.json").json()["paths"]["/search"]["post"]["operationId"]


def test_no_index_is_503_with_instructions(settings, fake_embedder):
    with TestClient(create_app(settings, embedder=fake_embedder, background=False)) as c:
        err = _error(c.post("/search", json={"query": "武汉"}), 503, "index_not_ready")
        assert "qa index" in err["message"]
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200
        # Once the index is built, the running service picks it up without a restart.
        c.app.state.qa.reload_check_s = 0.0  # look at index/CURRENT on every request
        build_index(settings.corpus_dir, settings.index_dir, fake_embedder)
        assert c.post("/search", json={"query": "武汉"}).status_code == 200


def test_removed_document_stops_answering_without_restart(client, settings, fake_embedder):
    assert any(p["doc_id"] == DIGEST for p in
               client.post("/search", json={"query": "院士 高校", "top_k": 10}).json()["results"])
    client.app.state.qa.reload_check_s = 0.0  # look at index/CURRENT on every request
    (settings.corpus_dir / f"{DIGEST}.md").unlink()
    build_index(settings.corpus_dir, settings.index_dir, fake_embedder)
    results = client.post("/search", json={"query": "院士 高校", "top_k": 10}).json()["results"]
    assert results and all(p["doc_id"] != DIGEST for p in results)
    _error(client.get(f"/documents/{DIGEST}"), 404)
