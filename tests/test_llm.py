"""Generated answers: citation enforcement, and the chat-completions client against a small
local server that speaks the protocol (plain and streamed), never a remote service."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app
from qa.config import Settings
from qa.errors import UpstreamError
from qa.index.build import build_index
from qa.retrieve.llm import (
    ChatClient,
    LLMConfig,
    build_messages,
    enforce_citations,
    generated_sentences,
)
from qa.types import Chunk, Hit
from tests.helpers import force_answerable, parse_sse

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
# One grounded sentence, one citing a passage that was never retrieved, one citing nothing.
REPLY = "武汉将建设国家科技创新中心[1]。这一点也很重要[9]。此外还有一个无依据的说法。"
CHUNKS = ["武汉将建设国家科技", "创新中心[1]。", "这一点也很重要[9]。", "此外还有一个无依据的说法。"]


# -- enforcement -------------------------------------------------------------------------


def test_bogus_marker_removed_and_unmarked_sentence_flagged() -> None:
    g = enforce_citations(REPLY, n_passages=5)
    assert "[9]" not in g.text and "[1]" in g.text
    assert g.removed_markers == ["[9]"]
    assert g.citations == [1]
    assert g.unsupported_sentences == ["这一点也很重要。", "此外还有一个无依据的说法。"]


def test_marker_forms_are_normalised() -> None:
    g = enforce_citations("Wuhan aims at 3.5% [1, 7]. Growth is fast 【2】. Done.[3][4]", 3)
    assert g.text == "Wuhan aims at 3.5% [1]. Growth is fast [2]. Done.[3]"
    assert g.removed_markers == ["[1, 7]", "[4]"]
    assert g.citations == [1, 2, 3] and g.unsupported_sentences == []


def test_english_sentences_and_line_breaks() -> None:
    text = "First point [1].\n- second point, no source\nThird. [2] Fourth is 2.5 times [2]"
    assert generated_sentences(text) == ["First point [1].", "- second point, no source",
                                         "Third. [2]", "Fourth is 2.5 times [2]"]
    assert enforce_citations(text, 2).unsupported_sentences == ["- second point, no source"]


def _hit(rank: int, text: str) -> Hit:
    chunk = Chunk(chunk_id=f"d#p{rank}", doc_id="d", paragraph=rank, window=0, char_start=0,
                  char_end=len(text), text=text, clean_text=text)
    return Hit(rank=rank, score=1.0, chunk=chunk, title="标题", date="2021-07-26",
               citation=f"《标题》第{rank}段")


def test_prompt_numbers_the_passages_and_names_the_language() -> None:
    msgs = build_messages("What is planned?", [_hit(1, "第一段。"), _hit(2, "第二段。")], "en")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "English" in msgs[0]["content"] and "[1]" in msgs[0]["content"]
    user = msgs[1]["content"]
    assert "[1] 《标题》第1段\n第一段。" in user and "[2] 《标题》第2段\n第二段。" in user
    assert user.endswith("Question: What is planned?")
    assert "简体中文" in build_messages("计划是什么?", [_hit(1, "x")], "zh")[0]["content"]


# -- a local chat-completions server -----------------------------------------------------


class FakeLLM:
    """Answers POST /v1/chat/completions like an OpenAI-compatible server would."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.status = 200
        self.reply = REPLY
        self.chunks = CHUNKS
        self.raw_stream: list[str] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions" or fake.status != 200:
                    self._send(fake.status if fake.status != 200 else 404,
                               b'{"error": {"message": "model overloaded"}}')
                    return
                if not body.get("stream"):
                    payload = {"id": "x", "object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": fake.reply},
                         "finish_reason": "stop"}]}
                    self._send(200, json.dumps(payload).encode())
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                lines = fake.raw_stream or (
                    [json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
                    + [json.dumps({"choices": [{"index": 0, "delta": {"content": c}}]})
                       for c in fake.chunks]
                    + [json.dumps({"choices": [{"index": 0, "delta": {},
                                                "finish_reason": "stop"}]}), "[DONE]"])
                for line in lines:
                    self.wfile.write(f"data: {line}\n\n".encode())
                    self.wfile.flush()

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    yield fake
    fake.close()


def _client(url: str, **kw) -> ChatClient:
    return ChatClient(LLMConfig(base_url=url, model="tiny", api_key="sk-test", timeout=5, **kw))


def test_complete_and_stream(llm: FakeLLM) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    assert _client(llm.url).complete(msgs) == REPLY
    assert list(_client(llm.url + "/chat/completions").stream(msgs)) == CHUNKS
    plain, streamed = llm.requests
    assert plain["model"] == "tiny" and plain["messages"] == msgs and not plain["stream"]
    assert streamed["stream"] is True
    assert llm.headers[0]["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("status", [500, 429])
def test_http_errors_are_upstream_errors(llm: FakeLLM, status: int) -> None:
    llm.status = status
    with pytest.raises(UpstreamError, match=f"HTTP {status}.*overloaded") as err:
        _client(llm.url).complete([{"role": "user", "content": "hi"}])
    assert err.value.status == 502 and "sk-test" not in err.value.message
    with pytest.raises(UpstreamError, match=f"HTTP {status}"):
        list(_client(llm.url).stream([{"role": "user", "content": "hi"}]))


def test_unreachable_endpoint_is_an_upstream_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(UpstreamError, match="ConnectError"):
        _client(f"http://127.0.0.1:{port}/v1").complete([{"role": "user", "content": "x"}])


def test_malformed_stream_is_an_upstream_error(llm: FakeLLM) -> None:
    llm.raw_stream = [json.dumps({"choices": [{"delta": {"content": "ok"}}]}), "{not json"]
    with pytest.raises(UpstreamError, match="not JSON"):
        list(_client(llm.url).stream([{"role": "user", "content": "x"}]))
    llm.raw_stream = [json.dumps({"error": {"message": "context too long"}})]
    with pytest.raises(UpstreamError, match="context too long"):
        list(_client(llm.url).stream([{"role": "user", "content": "x"}]))


# -- POST /answer with generate ----------------------------------------------------------


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, fake_embedder) -> Path:
    path = tmp_path_factory.mktemp("llm") / "index"
    build_index(CORPUS, path, fake_embedder)
    return path


def _app_client(index_dir: Path, embedder, llm_url: str | None) -> TestClient:
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir, embedder="hashing",
                        allow_download=False, llm_base_url=llm_url,
                        llm_model="tiny" if llm_url else None, llm_api_key="sk-test")
    return TestClient(create_app(settings, embedder=embedder, background=False))


QUESTION = {"question": "武汉科技创新中心", "top_k": 3, "generate": True}


def test_answer_generates_with_enforced_citations(llm: FakeLLM, index_dir, fake_embedder) -> None:
    with _app_client(index_dir, fake_embedder, llm.url) as c:
        force_answerable(c.app.state.qa.searcher)
        body = c.post("/answer", json=QUESTION).json()
    assert body["generated"] == "武汉将建设国家科技创新中心[1]。这一点也很重要。此外还有一个无依据的说法。"
    assert body["removed_markers"] == ["[9]"]
    assert body["unsupported_sentences"] == ["这一点也很重要。", "此外还有一个无依据的说法。"]
    assert body["sentences"] and body["warnings"] == []
    prompt = llm.requests[0]["messages"][1]["content"]
    for i, p in enumerate(body["passages"], start=1):
        assert f"[{i}] {p['citation']}\n{p['display_text']}" in prompt
    assert "简体中文" in llm.requests[0]["messages"][0]["content"]


def test_answer_streams_llm_tokens(llm: FakeLLM, index_dir, fake_embedder) -> None:
    with _app_client(index_dir, fake_embedder, llm.url) as c:
        force_answerable(c.app.state.qa.searcher)
        with c.stream("POST", "/answer", json={**QUESTION, "stream": True}) as r:
            events = parse_sse(r.read().decode("utf-8"))
    names = [e for e, _ in events]
    assert names[0] == "passages" and names[-1] == "done" and "answer" in names
    assert names.index("token") > max(i for i, n in enumerate(names) if n == "answer")
    assert [d["delta"] for e, d in events if e == "token"] == CHUNKS
    done = events[-1][1]
    assert done["generated"] == enforce_citations(REPLY, len(done["passages"])).text
    assert done["removed_markers"] == ["[9]"] and len(done["unsupported_sentences"]) == 2


def test_llm_failure_degrades_to_extractive(llm: FakeLLM, index_dir, fake_embedder) -> None:
    llm.status = 500
    with _app_client(index_dir, fake_embedder, llm.url) as c:
        force_answerable(c.app.state.qa.searcher)
        body = c.post("/answer", json=QUESTION).json()
        with c.stream("POST", "/answer", json={**QUESTION, "stream": True}) as r:
            events = parse_sse(r.read().decode("utf-8"))
    assert body["generated"] is None and body["sentences"]
    assert "HTTP 500" in body["warnings"][0] and "extractive answer only" in body["warnings"][0]
    assert [e for e, _ in events][-2:] == ["warning", "done"]
    assert "HTTP 500" in events[-1][1]["warnings"][0]


def test_generate_without_llm_or_coverage_warns(llm: FakeLLM, index_dir, fake_embedder) -> None:
    with _app_client(index_dir, fake_embedder, None) as c:
        force_answerable(c.app.state.qa.searcher)
        body = c.post("/answer", json=QUESTION).json()
        assert body["generated"] is None and "not configured" in body["warnings"][0]
        assert c.post("/answer", json={**QUESTION, "generate": False}).json()["warnings"] == []
    with _app_client(index_dir, fake_embedder, llm.url) as c:
        force_answerable(c.app.state.qa.searcher, False)
        body = c.post("/answer", json=QUESTION).json()
    assert not body["answerable"] and body["generated"] is None
    assert "does not cover" in body["warnings"][0]
    assert llm.requests == []  # nothing to ground an answer in: the LLM is not asked
