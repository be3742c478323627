"""A streamed /answer whose client goes away closes its connection to the LLM at once (it
stayed established for minutes): a local chat-completions server sends one token, then
waits, and records when the service's connection to it closes."""

from __future__ import annotations

import json
import socket
import threading

from qa.api import create_app
from tests.faults.conftest import live_server
from tests.helpers import force_answerable

WAIT = 30.0  # how long the fake LLM would hold the connection before its next token


class SlowLLM:
    """One connection: read the request, stream a first token, then wait for more data;
    ``closed`` is set when the peer closes (recv returns nothing or fails)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(WAIT)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.first_token_sent = threading.Event()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(WAIT)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            while len(body) < length:
                body += conn.recv(65536)
            event = {"choices": [{"index": 0, "delta": {"content": "武汉"}}]}
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Connection: close\r\n\r\n"
                         + f"data: {json.dumps(event)}\n\n".encode())
            self.first_token_sent.set()
            try:
                if conn.recv(1) == b"":
                    self.closed.set()
            except OSError:
                self.closed.set()

    def close(self) -> None:
        self.sock.close()


def test_client_disconnect_closes_the_upstream_connection(pristine, embedder, tmp_path):
    llm = SlowLLM()
    settings = pristine.copy(tmp_path / "copy").model_copy(
        update={"llm_base_url": llm.url, "llm_model": "slow"})
    app = create_app(settings, embedder=embedder, background=False)
    try:
        with live_server(app, settings) as (host, port):
            force_answerable(app.state.qa.searcher)  # the fake embedder's scores are low
            body = json.dumps({"question": "武汉有多少名院士?", "stream": True,
                               "generate": True}).encode()
            with socket.create_connection((host, port), timeout=WAIT) as client:
                client.sendall(f"POST /answer HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                               f"application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                               .encode() + body)
                received = b""
                while b"event: token" not in received:
                    chunk = client.recv(65536)
                    assert chunk, "the stream ended before the LLM's first token"
                    received += chunk
                # set just after the send: the client may read the token first
                assert llm.first_token_sent.wait(WAIT)
            # The client is gone; the service must hang up on the LLM, not wait for it.
            assert llm.closed.wait(10), "the upstream connection is still open"
            with socket.create_connection((host, port), timeout=WAIT) as again:
                again.sendall(f"GET /readyz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                assert b" 200 " in again.recv(65536).split(b"\r\n")[0]
    finally:
        llm.close()
