"""Slow clients are cut off: raw sockets against a real uvicorn (run as `qa serve` runs it)
with one-second limits. A client paces its bytes with socket timeouts (a recv that waits
for the server's answer), never with sleeps."""

from __future__ import annotations

import json
import select
import socket
import time

import pytest

from qa.api import create_app
from tests.faults.conftest import live_server

LIMIT = 1.0
SLACK = 4.0  # a loaded CI machine: generous, and still far below the 30 s seen before


@pytest.fixture(scope="module")
def server(pristine, embedder, tmp_path_factory):
    settings = pristine.copy(tmp_path_factory.mktemp("slow") / "copy").model_copy(
        update={"header_timeout_s": LIMIT, "body_timeout_s": LIMIT, "keep_alive_s": LIMIT,
                "max_header_bytes": 8192})
    with live_server(create_app(settings, embedder=embedder, background=False),
                     settings) as address:
        yield address


def _connect(server) -> socket.socket:
    return socket.create_connection(server, timeout=LIMIT + SLACK)


def _drip(sock: socket.socket, data: bytes, every: float = 0.25) -> tuple[bytes, float]:
    """Send ``data`` a byte at a time, waiting ``every`` seconds for an answer between bytes;
    returns what the server sent (b"" if it just closed) and when, once it answered."""
    started = time.monotonic()
    sock.settimeout(every)
    for i in range(len(data)):
        try:
            sock.sendall(data[i:i + 1])
        except OSError:  # closed while we were still sending
            break
        try:
            answer = sock.recv(65536)
            return answer, time.monotonic() - started
        except TimeoutError:
            continue
    sock.settimeout(LIMIT + SLACK)
    try:
        answer = sock.recv(65536)
    except ConnectionResetError:
        answer = b""
    return answer, time.monotonic() - started


def _status(answer: bytes) -> int | None:
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else None


def test_a_silent_connection_is_closed(server):
    with _connect(server) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < LIMIT + SLACK


def test_a_slow_request_head_gets_408_and_is_closed(server):
    head = b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 200
    with _connect(server) as sock:
        answer, took = _drip(sock, head)
        assert _status(answer) == 408 and took < LIMIT + SLACK
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "request_timeout"


def test_a_slow_body_gets_408_and_is_closed(server):
    body = json.dumps({"query": "武汉" * 40}).encode()
    head = (f"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with _connect(server) as sock:
        sock.sendall(head)
        answer, took = _drip(sock, body)
        assert _status(answer) == 408 and took < LIMIT + SLACK
        assert b"connection: close" in answer.lower()
        assert b"request_timeout" in answer


def test_an_oversized_request_head_gets_431(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000)
        answer = sock.recv(65536)
        assert _status(answer) == 431 and b"request_head_too_large" in answer


def test_an_idle_keep_alive_connection_is_closed(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _status(sock.recv(65536)) == 200
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < LIMIT + SLACK


def test_many_slow_connections_are_all_cut_off_and_service_goes_on(server):
    socks = [_connect(server) for _ in range(50)]
    try:
        for i, s in enumerate(socks):  # half silent, half stuck half way through a head
            if i % 2:
                s.sendall(b"GET /search?q=x HTTP/1.1\r\nHost: 1")
        started, open_ = time.monotonic(), set(socks)
        while open_ and time.monotonic() - started < LIMIT + SLACK:
            ready, _, _ = select.select(list(open_), [], [], LIMIT + SLACK)
            for s in ready:
                try:
                    while s.recv(65536):
                        pass
                except OSError:
                    pass
                open_.discard(s)
        assert not open_, f"{len(open_)} connections still open"
    finally:
        for s in socks:
            s.close()
    with _connect(server) as sock:  # and a normal client is served as usual
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _status(sock.recv(65536)) == 200
