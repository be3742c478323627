"""Adding and removing documents over HTTP: the key, the limits, safe names, statuses, the
background writer; and the same through `qa add` / `qa remove`."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from qa.api import create_app
from qa.cli import app as cli_app
from qa.encoders.base import HashingEmbedder
from qa.index.build import build_index
from qa.service.uploads import safe_name
from qa.service.writes import add_document, indexed_ids

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NEW_TEXT = "汉阳区将建设一座光学原子钟塔,高三百米。\n\n第二段讲的是别的事情:城市绿道。\n"


@pytest.fixture
def wsettings(settings):
    build_index(settings.corpus_dir, settings.index_dir, HashingEmbedder())
    return settings.model_copy(update={"api_key": KEY})


def _client(settings, embedder=None) -> TestClient:
    return TestClient(create_app(settings, embedder=embedder or HashingEmbedder(),
                                 background=False))


@pytest.fixture
def client(wsettings):
    with _client(wsettings) as c:
        yield c


def _upload(c: TestClient, name: str, content: bytes | str = NEW_TEXT, headers=AUTH,
            params=None, **fields):
    data = content.encode() if isinstance(content, str) else content
    return c.post("/documents", files={"file": (name, data, "text/plain")}, data=fields,
                  headers=headers, params=params)


def _settle(c: TestClient) -> None:
    assert c.app.state.writer.wait_idle(60), "the background build did not finish"


def _error(resp, status: int, code: str | None = None) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]["message"]


def _top(c: TestClient, query: str) -> list[str]:
    r = c.post("/search", json={"query": query, "top_k": 3, "mode": "lexical"})
    assert r.status_code == 200
    return [p["doc_id"] for p in r.json()["results"]]


def test_upload_is_indexed_cited_then_deleted(client, wsettings):
    r = _upload(client, "量子钟塔.txt", title="原子钟塔规划", date="2024-05-01")
    assert r.status_code == 202 and r.json() == {"doc_id": "量子钟塔", "status": "queued"}
    assert client.get("/documents/量子钟塔").json()["status"] in ("queued", "indexing", "ready")
    _settle(client)
    doc = client.get("/documents/量子钟塔").json()
    assert doc["status"] == "ready" and doc["reason"] is None
    assert doc["title"] == "原子钟塔规划" and doc["date"] == "2024-05-01" and doc["paragraphs"]
    listed = {d["doc_id"]: d for d in client.get("/documents").json()["documents"]}
    assert listed["量子钟塔"]["status"] == "ready" and listed["量子钟塔"]["chunk_count"] >= 2
    hit = client.post("/search", json={"query": "原子钟塔", "top_k": 1, "mode": "lexical"}
                      ).json()["results"][0]
    assert hit["doc_id"] == "量子钟塔"
    assert NEW_TEXT[hit["char_start"]:hit["char_end"]] == hit["text"]

    r = client.delete("/documents/量子钟塔", headers=AUTH)
    assert r.status_code == 202 and r.json()["doc_id"] == "量子钟塔"
    _settle(client)
    _error(client.get("/documents/量子钟塔"), 404, "unknown_document")
    assert "量子钟塔" not in {d["doc_id"] for d in client.get("/documents").json()["documents"]}
    assert "量子钟塔" not in _top(client, "原子钟塔")
    assert not list(wsettings.corpus_dir.glob("量子钟塔*"))
    _error(client.delete("/documents/量子钟塔", headers=AUTH), 404)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}])
def test_write_routes_need_the_key(client, wsettings, headers):
    r = _upload(client, "a.txt", headers=headers)
    _error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    _error(client.delete("/documents/wuhan-9th-plenary-digest-2020-06-28", headers=headers), 401)
    assert not (wsettings.corpus_dir / "a.txt").exists()


def test_write_routes_are_off_without_a_key(settings):
    build_index(settings.corpus_dir, settings.index_dir, HashingEmbedder())
    with _client(settings) as c:
        assert "QA_API_KEY" in _error(_upload(c, "a.txt"), 403, "forbidden")
        _error(c.delete("/documents/wuhan-9th-plenary-digest-2020-06-28", headers=AUTH), 403)
        assert c.get("/documents").status_code == 200  # reading stays open


def test_clash_is_409_unless_replace(client, wsettings):
    assert _upload(client, "plan.txt", "旧版本:修建一座木桥。").status_code == 202
    _settle(client)
    assert "replace=true" in _error(_upload(client, "plan.txt", "新版本"), 409, "conflict")
    _error(_upload(client, "plan.md", "新版本"), 409, "conflict")  # same doc_id, other type
    r = _upload(client, "plan.md", "新版本:修建一座钢索吊桥。", params={"replace": "true"})
    assert r.status_code == 202
    _settle(client)
    assert [p.name for p in wsettings.corpus_dir.glob("plan*")] == ["plan.md"]
    assert _top(client, "钢索吊桥")[0] == "plan"
    assert "plan" not in _top(client, "木桥")


def test_upload_limits(wsettings):
    small = wsettings.model_copy(update={"max_upload_bytes": 100_000})
    with _client(small) as c:
        # Far over the 64 KiB JSON limit, within the upload limit: accepted.
        assert _upload(c, "big.txt", b"a" * 100_000).status_code == 202
        assert "QA_MAX_UPLOAD_BYTES" in _error(_upload(c, "over.txt", b"a" * 100_001), 413,
                                               "payload_too_large")
        _error(_upload(c, "huge.txt", b"a" * 300_000), 413, "payload_too_large")
        _settle(c)
    assert not (wsettings.corpus_dir / "over.txt").exists()
    assert not list(wsettings.corpus_dir.glob(".upload-*"))


def test_upload_limit_is_checked_while_streaming(wsettings):
    """An endless chunked upload is cut off after about the limit, not read to the end."""
    app = create_app(wsettings.model_copy(update={"max_upload_bytes": 100_000}),
                     embedder=HashingEmbedder(), background=False)
    head = (b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\n")
    received, sent = [], []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": head if len(received) == 1 else b"x" * 65536,
                "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/documents", "raw_path": b"/documents",
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "server": ("test", 80), "client": ("test", 1),
             "headers": [(b"authorization", AUTH["Authorization"].encode()),
                         (b"content-type", b"multipart/form-data; boundary=zz")]}
    anyio.run(app, scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert len(received) <= 5  # (100_000 + 64 KiB of form overhead) / 64 KiB + the head
    assert not (wsettings.corpus_dir / "a.txt").exists()


def test_unsupported_or_missing_file(client):
    assert ".txt" in _error(_upload(client, "tool.exe", b"MZ"), 415, "unsupported_type")
    _error(client.post("/documents", data={"title": "x"}, headers=AUTH), 422, "invalid_request")
    _error(_upload(client, "a.txt", date="yesterday"), 422, "invalid_request")
    _error(_upload(client, "a.txt", date="2024-13-01"), 422, "invalid_request")
    _error(_upload(client, "a.txt", title="t" * 501), 422, "invalid_request")


@pytest.mark.parametrize("name, doc_id", [("../x.txt", "x"), ("a/b.txt", "a_b"),
                                          ("..\\..\\c.txt", "c"), (".hidden.txt", "hidden")])
def test_unsafe_names_stay_inside_the_corpus(client, wsettings, name, doc_id):
    r = _upload(client, name)
    assert r.status_code == 202 and r.json()["doc_id"] == doc_id
    assert (wsettings.corpus_dir / f"{doc_id}.txt").exists()
    outside = {p for p in wsettings.corpus_dir.parent.rglob("*.txt")
               if wsettings.corpus_dir not in p.parents}
    assert not outside
    _settle(client)


@pytest.mark.parametrize("name", [".hidden", "..", "/", ".txt", "a/.."])
def test_names_without_a_document_are_refused(client, name):
    r = _upload(client, name)
    assert r.status_code in (415, 422), r.text


def test_safe_name_rules():
    assert safe_name("武汉市规划纲要.txt") == "武汉市规划纲要.txt"
    assert safe_name("a\u202eb\x00c.txt") == "abc.txt"  # format and control characters
    assert safe_name("x..y.txt") == "x.y.txt" and safe_name(" a b .txt ") == "a b.txt"
    assert safe_name('q?#%"<>|*:.md') == "q" + "_" * 9 + ".md"
    long = safe_name("长" * 200 + ".txt")
    assert long.endswith(".txt") and len(long.encode()) <= 204


def test_failed_upload_is_reported_and_does_not_block_the_next(client, wsettings):
    assert _upload(client, "empty.txt", b"").status_code == 202
    assert _upload(client, "good.txt").status_code == 202
    _settle(client)
    bad = client.get("/documents/empty").json()
    assert bad["status"] == "failed" and "empty" in bad["reason"] and bad["paragraphs"] == []
    assert client.get("/documents/good").json()["status"] == "ready"
    assert _top(client, "原子钟塔")[0] == "good"
    listed = {d["doc_id"]: d for d in client.get("/documents").json()["documents"]}
    assert listed["empty"]["status"] == "failed" and listed["empty"]["reason"]
    # A later good upload is not held up by the file that keeps failing.
    assert _upload(client, "later.txt", "城市绿道连通东湖与汉江。").status_code == 202
    _settle(client)
    assert client.get("/documents/later").json()["status"] == "ready"
    assert client.get("/documents/empty").json()["status"] == "failed"


def test_status_survives_a_restart(wsettings):
    with _client(wsettings) as c:
        _upload(c, "empty.txt", b"")
        _upload(c, "good.txt")
        _settle(c)
    # A write queued while no service runs is picked up when one starts.
    add_document(wsettings, "later.txt", io.BytesIO("城市绿道连通东湖与汉江。".encode()), {})
    with _client(wsettings) as c:
        _settle(c)
        listed = {d["doc_id"]: d for d in c.get("/documents").json()["documents"]}
        assert listed["empty"]["status"] == "failed" and "empty" in listed["empty"]["reason"]
        assert listed["good"]["status"] == "ready" and listed["later"]["status"] == "ready"


class GatedEmbedder(HashingEmbedder):
    """Passage encoding (the index build) waits until released; queries never wait."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed_batch(self, texts, kind):
        if kind == "passage":
            self.entered.set()
            assert self.release.wait(60)
        return super().embed_batch(texts, kind)


def test_search_answers_from_the_live_index_while_a_build_runs(wsettings):
    embedder = GatedEmbedder()
    with _client(wsettings, embedder) as c:
        assert _upload(c, "good.txt").status_code == 202
        assert embedder.entered.wait(60)
        assert c.get("/documents/good").json()["status"] == "indexing"
        r = c.post("/search", json={"query": "武汉有多少名院士", "top_k": 3})
        assert r.status_code == 200 and r.json()["results"]
        assert "good" not in _top(c, "原子钟塔")
        embedder.release.set()
        _settle(c)
        assert c.get("/documents/good").json()["status"] == "ready"
        assert _top(c, "原子钟塔")[0] == "good"


def test_the_service_builds_in_a_process_of_its_own(wsettings):
    # No embedder handed in: the writer runs `python -m qa.service.build_process`.
    with TestClient(create_app(wsettings, background=False)) as c:
        assert _upload(c, "good.txt").status_code == 202
        _settle(c)
        assert c.get("/documents/good").json()["status"] == "ready"
        assert _top(c, "原子钟塔")[0] == "good"


def test_first_upload_into_an_empty_service(settings, tmp_path):
    empty = settings.model_copy(update={"api_key": KEY, "corpus_dir": tmp_path / "fresh"})
    with _client(empty) as c:
        assert c.get("/documents").json() == {"documents": []}
        assert _upload(c, "good.txt").status_code == 202
        _settle(c)
        assert [d["status"] for d in c.get("/documents").json()["documents"]] == ["ready"]
        assert _top(c, "原子钟塔") == ["good"]


def test_chat_tools_stay_read_only(client):
    names = {t["function"]["name"] for t in client.get("/tools").json()}
    assert names and not {n for n in names if any(w in n for w in ("add", "remove", "delete",
                                                                    "upload"))}


def _cli(args: list[str], settings) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, [*args, "--corpus", str(settings.corpus_dir),
                                          "--index", str(settings.index_dir)],
                                env={"QA_EMBEDDER": "hashing", "QA_ALLOW_DOWNLOAD": "false"})
    return result.exit_code, result.output


def test_cli_add_and_remove(wsettings, tmp_path: Path):
    good, empty = tmp_path / "钟塔.txt", tmp_path / "empty.txt"
    good.write_text(NEW_TEXT, encoding="utf-8")
    empty.write_bytes(b"")
    code, out = _cli(["add", str(good), str(empty), "--title", "钟塔", "--date", "2024-05"],
                     wsettings)
    assert code == 1 and "added 钟塔" in out and "failed empty" in out and "empty" in out
    assert "钟塔" in indexed_ids(wsettings) and "empty" not in indexed_ids(wsettings)
    code, out = _cli(["add", str(good)], wsettings)
    assert code == 1 and "replace" in out
    assert _cli(["add", str(good), "--replace"], wsettings)[0] == 0
    code, out = _cli(["remove", "钟塔", "nope"], wsettings)
    assert code == 1 and "removed 钟塔" in out and "nope" in out
    assert "钟塔" not in indexed_ids(wsettings)
    assert not list(wsettings.corpus_dir.glob("钟塔*"))
