"""The MCP server through the SDK's own clients: stdio (``python -m qa mcp`` as a child
process) and streamable HTTP (a real uvicorn server with the app's /mcp), plus GET /tools.

The fake embedder keeps this fast; what matters here is the protocol, the citation fields
and the offsets, not ranking quality.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from qa.api import create_app
from qa.config import Settings
from qa.index.build import build_index

from .helpers import serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
DIGEST = "wuhan-9th-plenary-digest-2020-06-28"
TOOLS = {"search_passages", "get_passage", "list_documents"}
RESULT_FIELDS = {"rank", "score", "doc_id", "title", "paragraph", "char_start", "char_end",
                 "section", "speaker", "text", "citation"}
ZH_QUESTION = "武汉有多少名院士?"
EN_QUESTION = "What does the plenary session say about the industrial map of Wuhan?"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, fake_embedder) -> Path:
    path = tmp_path_factory.mktemp("mcp") / "index"
    build_index(CORPUS, path, fake_embedder)
    return path


def _source(doc_id: str) -> str:
    (path,) = [p for p in CORPUS.iterdir() if p.stem == doc_id and p.suffix in (".txt", ".md")]
    return path.read_text(encoding="utf-8")


def _check_search(data: dict) -> None:
    assert data["results"], data
    assert {"query", "mode", "took_ms", "results", "answerable", "confidence"} <= set(data)
    for hit in data["results"]:
        assert RESULT_FIELDS <= set(hit)
        assert _source(hit["doc_id"])[hit["char_start"]:hit["char_end"]] == hit["text"]
        assert hit["citation"].startswith("《") and f"第{hit['paragraph']}段" in hit["citation"]


def _check_neighbours(data: dict, paragraph: int) -> None:
    source = _source(data["doc_id"])
    assert data["passage"]["paragraph"] == paragraph
    assert data["previous"]["paragraph"] == paragraph - 1
    assert data["next"]["paragraph"] == paragraph + 1
    for p in (data["previous"], data["passage"], data["next"]):
        assert source[p["char_start"]:p["char_end"]] == p["text"]
        assert f"第{p['paragraph']}段" in p["citation"]
    assert data["previous"]["char_end"] <= data["passage"]["char_start"]
    assert data["passage"]["char_end"] <= data["next"]["char_start"]


def _text_json(result) -> dict:
    """What a chat model reads: the text content, which must carry the same JSON."""
    (block,) = result.content
    return json.loads(block.text)


async def _exercise(session: ClientSession) -> dict:
    """Everything a chat application does, through one client session."""
    await session.initialize()
    listing = await session.list_tools()
    tools = {t.name: t for t in listing.tools}
    assert set(tools) == TOOLS
    for t in tools.values():
        assert "Wuhan" in t.description and "武汉" in t.description, t.name
        assert "English" in t.description and "中文" in t.description, t.name
        assert t.annotations is not None and t.annotations.read_only_hint
    assert tools["search_passages"].input_schema["required"] == ["query"]

    out: dict = {}
    for label, question in (("zh", ZH_QUESTION), ("en", EN_QUESTION)):
        res = await session.call_tool("search_passages", {"query": question, "top_k": 3})
        assert not res.is_error, res.content
        assert res.structured_content == _text_json(res)
        _check_search(res.structured_content)
        assert len(res.structured_content["results"]) == 3
        out[label] = res.structured_content

    res = await session.call_tool("search_passages",
                                  {"query": "武汉", "top_k": 5, "doc_ids": [DIGEST]})
    assert {h["doc_id"] for h in res.structured_content["results"]} == {DIGEST}

    res = await session.call_tool("get_passage", {"doc_id": DIGEST, "paragraph": 5})
    assert not res.is_error, res.content
    _check_neighbours(res.structured_content, 5)
    first = await session.call_tool("get_passage", {"doc_id": DIGEST, "paragraph": 1})
    assert first.structured_content["previous"] is None

    docs = await session.call_tool("list_documents", {})
    assert not docs.is_error
    assert {d["doc_id"] for d in docs.structured_content["documents"]} == {
        p.stem for p in CORPUS.iterdir() if p.suffix in (".txt", ".md")}

    # Bad input and unknown documents are tool errors with a message, not crashes.
    for name, args, words in (
        ("get_passage", {"doc_id": "no-such-doc", "paragraph": 1}, "unknown doc_id"),
        ("get_passage", {"doc_id": DIGEST, "paragraph": 9999}, "no paragraph 9999"),
        ("search_passages", {"query": "武汉", "doc_ids": ["no-such-doc"]}, "unknown doc_id"),
        ("search_passages", {"query": "武汉", "top_k": 0}, "top_k"),
        ("search_passages", {"query": "   "}, "query"),
        ("get_passage", {"doc_id": DIGEST}, "paragraph"),
    ):
        res = await session.call_tool(name, args)
        assert res.is_error, (name, args)
        assert words in res.content[0].text, res.content[0].text
    # ... and the session still works after them.
    res = await session.call_tool("search_passages", {"query": ZH_QUESTION, "top_k": 1})
    assert not res.is_error
    return out


def test_stdio_transport(index_dir: Path, tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "qa", "mcp"], cwd=str(ROOT),
        env={"QA_EMBEDDER": "hashing", "QA_INDEX_DIR": str(index_dir),
             "QA_CORPUS_DIR": str(CORPUS), "QA_ALLOW_DOWNLOAD": "false",
             "PYTHONPATH": str(ROOT)})

    async def main() -> None:
        with (tmp_path / "server.log").open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), \
                    ClientSession(read, write) as session:
                with anyio.fail_after(60):
                    await _exercise(session)

    anyio.run(main)


@pytest.fixture
def http_server(index_dir: Path, fake_embedder) -> Iterator[str]:
    """The whole app under a real uvicorn, as `qa serve` runs it."""
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir, embedder="hashing",
                        allow_download=False)
    with _serve(create_app(settings, embedder=fake_embedder, background=False)) as url:
        yield url


def _serve(app) -> contextlib.AbstractContextManager[str]:
    return serve_in_thread(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                          lifespan="on"))


def test_streamable_http_transport(http_server: str) -> None:
    async def main() -> dict:
        async with streamable_http_client(f"{http_server}/mcp") as (read, write), \
                ClientSession(read, write) as session:
            with anyio.fail_after(60):
                return await _exercise(session)

    found = anyio.run(main)
    # The same results and fields as POST /search on the same service.
    direct = httpx.post(f"{http_server}/search", json={"query": ZH_QUESTION, "top_k": 3}).json()
    assert found["zh"]["results"] == direct["results"]
    assert {k for k in direct if k != "took_ms"} == {k for k in found["zh"] if k != "took_ms"}


def test_http_mcp_reports_index_not_ready(tmp_path: Path, fake_embedder) -> None:
    settings = Settings(corpus_dir=CORPUS, index_dir=tmp_path / "empty", embedder="hashing",
                        allow_download=False)
    app = create_app(settings, embedder=fake_embedder, background=False)

    async def main() -> None:
        async with streamable_http_client(f"{url}/mcp") as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            res = await session.call_tool("search_passages", {"query": ZH_QUESTION})
            assert res.is_error
            assert "index_not_ready" in res.content[0].text
            assert "qa index" in res.content[0].text

    with _serve(app) as url:
        anyio.run(main)


# -- GET /tools: the same definitions as OpenAI-style functions --------------------------


@pytest.fixture(scope="module")
def client(index_dir: Path, fake_embedder) -> Iterator[TestClient]:
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir, embedder="hashing",
                        allow_download=False)
    with TestClient(create_app(settings, embedder=fake_embedder, background=False)) as c:
        yield c


def test_tools_are_openai_functions_from_the_mcp_definitions(client: TestClient) -> None:
    tools = client.get("/tools").json()
    assert {t["function"]["name"] for t in tools} == TOOLS
    app_server = client.app.state.mcp  # type: ignore[attr-defined]
    mcp_tools = {t.name: t for t in anyio.run(app_server.list_tools)}
    for t in tools:
        assert t["type"] == "function" and set(t["function"]) == {"name", "description",
                                                                   "parameters"}
        fn = t["function"]
        assert fn["description"] == mcp_tools[fn["name"]].description
        assert fn["parameters"] == mcp_tools[fn["name"]].input_schema
        assert fn["parameters"]["type"] == "object"
    search = next(t["function"] for t in tools if t["function"]["name"] == "search_passages")
    props = search["parameters"]["properties"]
    assert set(props) == {"query", "top_k", "doc_ids"}
    assert props["top_k"]["default"] == 5 and props["top_k"]["maximum"] == 50


def test_post_tool_runs_the_same_code_as_mcp(client: TestClient) -> None:
    via_tool = client.post("/tools/search_passages", json={"query": ZH_QUESTION, "top_k": 3})
    assert via_tool.status_code == 200
    via_search = client.post("/search", json={"query": ZH_QUESTION, "top_k": 3}).json()
    assert via_tool.json()["results"] == via_search["results"]
    ctx = client.post("/tools/get_passage", json={"doc_id": DIGEST, "paragraph": 5})
    _check_neighbours(ctx.json(), 5)
    assert client.post("/tools/list_documents").status_code == 200


@pytest.mark.parametrize("name, args, status, code", [
    ("get_passage", {"doc_id": "no-such-doc", "paragraph": 1}, 404, "unknown_document"),
    ("get_passage", {"doc_id": DIGEST, "paragraph": 9999}, 404, "not_found"),
    ("get_passage", {"doc_id": DIGEST, "paragraph": "five"}, 422, "invalid_request"),
    ("search_passages", {"query": "武汉", "top_k": 99}, 422, "invalid_request"),
    ("no_such_tool", {}, 404, "not_found"),
])
def test_post_tool_errors_keep_their_status(client: TestClient, name, args, status,
                                            code) -> None:
    r = client.post(f"/tools/{name}", json=args)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_openapi_describes_the_new_operations(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ops = {op["operationId"]: op for path in spec["paths"].values() for op in path.values()}
    for op_id in ("answer_question", "list_tools", "call_tool"):
        op = ops[op_id]
        assert op["summary"] and op["description"], op_id
    answer_body = ops["answer_question"]["requestBody"]["content"]["application/json"]
    schema = spec["components"]["schemas"]["AnswerRequest"]
    assert schema["examples"] and "schema" in answer_body
    assert ops["call_tool"]["requestBody"]["content"]["application/json"]["examples"]
    assert "/mcp" not in spec["paths"]
