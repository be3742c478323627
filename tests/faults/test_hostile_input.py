"""Hostile input: lone surrogates wherever text goes in (422, and the keep-alive connection
stays usable), blank questions refused by the schema itself, 405 with Allow, /mcp behind
`--host 0.0.0.0`, and hostile corpus files: a symlink or a `..` path out of the corpus, a
sidecar with list values, odd encodings. The last three are the document readers' to fix."""

from __future__ import annotations

import json
import socket

import pytest

from qa.api import create_app
from qa.config import Settings
from qa.errors import CorpusError
from qa.index.build import build_index
from tests.faults.conftest import DIGEST, app_client, live_server

SURROGATE = "\\ud800"  # as JSON escapes it
BAD_BODIES = [
    ("/search", f'{{"query": "{SURROGATE}"}}'),
    ("/search", f'{{"query": "武汉", "doc_ids": ["{SURROGATE}"]}}'),
    ("/answer", f'{{"question": "{SURROGATE}"}}'),
    ("/tools/search_passages", f'{{"query": "{SURROGATE}"}}'),
    ("/tools/search_passages", f'{{"query": "武汉", "doc_ids": ["{SURROGATE}"]}}'),
    ("/tools/get_passage", f'{{"doc_id": "{SURROGATE}", "paragraph": 1}}'),
]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def served(pristine, embedder, tmp_path_factory):
    settings = pristine.copy(tmp_path_factory.mktemp("hostile") / "copy")
    with app_client(settings, embedder) as c:
        yield c


@pytest.mark.parametrize("path, body", BAD_BODIES)
def test_a_lone_surrogate_is_a_422(served, path, body):
    r = served.post(path, content=body.encode(), headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    assert "surrogate" in r.json()["error"]["message"]


def test_odd_paths_are_404_never_500(served):
    for path in ("/documents/%ED%A0%80", "/documents/..%2F..%2Fetc%2Fpasswd",
                 "/documents/%2e%2e%2fcorpus", "/documents/%00"):
        assert served.get(path).status_code == 404, path
    r = served.post("/search", json={"query": "武汉", "doc_ids": ["../../etc/passwd"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_document"


def _http(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on an open connection, and its response (Content-Length framed)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _post(path: str, body: str) -> bytes:
    raw = body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n").encode() + raw


def test_the_connection_stays_usable_after_bad_text(pristine, embedder, tmp_path):
    """Every bad body, then a good request, on one keep-alive connection of a real server."""
    settings = pristine.copy(tmp_path / "copy")
    app = create_app(settings, embedder=embedder, background=False)
    with live_server(app, settings) as (host, port), \
            socket.create_connection((host, port), timeout=30) as sock:
        for path, body in BAD_BODIES:
            status, headers, _ = _http(sock, _post(path, body))
            assert status == 422 and headers.get("connection") != "close"
        status, _, body = _http(sock, _post("/search", '{"query": "光芯屏端网"}'))
        assert status == 200 and json.loads(body)["results"]


def test_the_schema_says_what_a_question_may_be(served):
    spec = served.get("/openapi.json").json()
    body = spec["components"]["schemas"]["SearchRequest"]["properties"]["query"]
    assert body["minLength"] == 1 and body["pattern"]
    (q,) = [p for p in spec["paths"]["/search"]["get"]["parameters"] if p["name"] == "q"]
    assert q["schema"]["minLength"] == 1 and q["schema"]["pattern"] == body["pattern"]
    answer = spec["components"]["schemas"]["AnswerRequest"]["properties"]["question"]
    assert answer["minLength"] == 1 and answer["pattern"] == body["pattern"]
    for blank in ("", " ", "\u3000\n", "\x1c"):
        r = served.post("/search", json={"query": blank})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert served.post("/search", json={"query": 5}).status_code == 422
    assert served.post("/answer", json={"question": "武汉", "stream": 0}).status_code == 422


def test_every_route_documents_the_errors_it_can_answer(served):
    paths = served.get("/openapi.json").json()["paths"]
    body_errors = {"400", "408", "413", "422", "503"}
    expected = {
        ("/search", "post"): body_errors | {"404"},
        ("/search", "get"): {"404", "422", "503"},
        ("/documents", "get"): {"503"},
        ("/documents/{doc_id}", "get"): {"404", "422", "503"},
        ("/answer", "post"): body_errors,
        ("/tools/{name}", "post"): body_errors | {"404"},
        ("/readyz", "get"): {"503"},
    }
    for (path, method), codes in expected.items():
        assert codes <= set(paths[path][method]["responses"]), (path, method)


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", "/search", {"GET", "POST"}),
    ("PUT", "/answer", {"POST"}),
    ("POST", f"/documents/{DIGEST}", {"GET", "DELETE"}),
    ("GET", "/tools/search_passages", {"POST"}),
])
def test_405_says_what_is_allowed(served, method, path, allow):
    r = served.request(method, path)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert set(r.headers["allow"].split(", ")) == allow
    for m in allow:  # and what it says is allowed is
        assert served.request(m, path, json={"query": "武汉"}).status_code != 405


# -- /mcp and the host the service is bound to --------------------------------------------

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "1"}}}
MCP_HEADERS = {"accept": "application/json, text/event-stream", **JSON}


def _mcp_status(settings, embedder, host_header: str) -> int:
    with app_client(settings, embedder) as c:
        return c.post("/mcp", json=INIT, headers={**MCP_HEADERS, "host": host_header}
                      ).status_code


def test_mcp_follows_the_host_setting(pristine, embedder, tmp_path):
    base = pristine.copy(tmp_path / "copy")
    loopback = base.model_copy(update={"host": "127.0.0.1"})
    assert _mcp_status(loopback, embedder, "127.0.0.1:8000") == 200
    assert _mcp_status(loopback, embedder, "evil.example:8000") == 421  # DNS rebinding
    everywhere = base.model_copy(update={"host": "0.0.0.0"})
    assert _mcp_status(everywhere, embedder, "qa.example.com") == 200
    listed = everywhere.model_copy(update={"mcp_allowed_hosts": ["qa.example.com"]})
    assert _mcp_status(listed, embedder, "qa.example.com") == 200
    assert _mcp_status(listed, embedder, "evil.example") == 421


def test_qa_serve_host_reaches_the_mcp_endpoint(pristine, embedder, tmp_path, monkeypatch):
    """`qa serve --host 0.0.0.0` (the Dockerfile's command) builds the app the server runs
    with that host: /mcp answers a non-loopback Host."""
    import uvicorn
    from fastapi.testclient import TestClient

    from qa.cli import main

    settings = pristine.copy(tmp_path / "copy")
    monkeypatch.setenv("QA_EMBEDDER", "hashing")
    served: list = []

    class Capture:
        def __init__(self, config) -> None:
            served.append(config)

        def run(self) -> None:
            pass

    monkeypatch.setattr(uvicorn, "Server", Capture)
    with pytest.raises(SystemExit) as done:
        main(["serve", "--host", "0.0.0.0", "--port", "8123",
              "--index", str(settings.index_dir), "--corpus", str(settings.corpus_dir)])
    assert done.value.code == 0
    (config,) = served
    assert (config.host, config.port) == ("0.0.0.0", 8123)
    with TestClient(config.app) as c:
        r = c.post("/mcp", json=INIT, headers={**MCP_HEADERS, "host": "10.1.2.3:8123"})
        assert r.status_code == 200, r.text


# -- hostile corpus files (the readers' branch) ------------------------------------------



def _served_text(settings: Settings, embedder) -> str:
    with app_client(settings, embedder) as c:
        docs = c.get("/documents").json()["documents"]
        return json.dumps([c.get(f"/documents/{d['doc_id']}").json() for d in docs],
                          ensure_ascii=False)


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_a_symlink_out_of_the_corpus_is_not_followed(pristine, embedder, tmp_path, target):
    settings = pristine.copy(tmp_path / "copy")
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("绝密：这一行在语料库之外。\n", encoding="utf-8")
    link = settings.corpus_dir / "passwd.txt"
    link.symlink_to(secret if target == "absolute" else "../../outside/secret.txt")
    try:
        build_index(settings.corpus_dir, settings.index_dir, embedder)
    except CorpusError as exc:  # refusing the file, by name, is fine too
        assert "passwd" in exc.message and str(secret) not in exc.message
    assert "绝密" not in _served_text(settings, embedder)


def test_a_folder_link_to_the_parent_is_not_read(pristine, embedder, tmp_path):
    settings = pristine.copy(tmp_path / "copy")
    (tmp_path / "copy" / "outside.txt").write_text("绝密：语料库外的文件。\n", encoding="utf-8")
    (settings.corpus_dir / "up").symlink_to("..")
    build_index(settings.corpus_dir, settings.index_dir, embedder)
    assert "绝密" not in _served_text(settings, embedder)


def test_a_sidecar_with_list_values_skips_its_document_by_name(pristine, embedder, tmp_path,
                                                                capsys, monkeypatch):
    from qa.cli import main

    monkeypatch.setenv("QA_EMBEDDER", "hashing")
    settings = pristine.copy(tmp_path / "copy")
    meta = settings.corpus_dir / f"{DIGEST}.meta.json"
    meta.write_text(json.dumps({"date": ["2021", "07"], "source": {"a": 1}}), encoding="utf-8")
    try:
        main(["index", "--corpus", str(settings.corpus_dir),
              "--index", str(settings.index_dir)])
    except SystemExit as exc:
        assert exc.code == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and meta.name in err and "skipped" in err
    with app_client(settings, embedder) as c:
        # listed as failed, with the reason, and nothing of it indexed
        doc = c.get(f"/documents/{DIGEST}").json()
        assert doc["status"] == "failed" and meta.name in doc["reason"]
        assert doc["paragraphs"] == []
        # the other document is still indexed and served
        assert c.post("/search", json={"query": "武汉"}).json()["results"]


def test_odd_encodings_are_read_or_refused_with_the_right_advice(pristine, embedder,
                                                                 tmp_path):
    settings = pristine.copy(tmp_path / "copy")
    (settings.corpus_dir / "utf16.txt").write_text("武汉市委全会的说明。\n", encoding="utf-16")
    (settings.corpus_dir / "bom.txt").write_text("\ufeff带BOM的标题\n\n武汉的正文。\n",
                                                 encoding="utf-8")
    (settings.corpus_dir / "noise.txt").write_bytes(b'"\x10A\x01\x02\x03\x7f')
    try:
        build_index(settings.corpus_dir, settings.index_dir, embedder)
    except CorpusError as exc:
        assert "GB18030" not in exc.message or "utf16.txt" not in exc.message
        return
    with app_client(settings, embedder) as c:
        docs = {d["doc_id"]: d for d in c.get("/documents").json()["documents"]}
        assert not docs.get("bom", {}).get("title", "").startswith("\ufeff")
        assert all(ch.isprintable() for ch in docs.get("noise", {}).get("title", ""))
        if "utf16" in docs:
            assert "武汉" in c.get("/documents/utf16").text
