"""Small helpers shared by the answer, LLM and MCP tests."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
from collections.abc import Iterator

import uvicorn

from qa.retrieve.search import Searcher


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """``[(event, data), ...]`` of a complete server-sent-events body."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def force_answerable(searcher: Searcher, value: bool = True) -> Searcher:
    """Make every search of ``searcher`` say ``answerable=value``. The confidence is
    calibrated on the real model's cosines, which the fake embedder never reaches; tests of
    what /answer does with either verdict should not depend on that calibration."""
    search = searcher.search

    def forced(*args, **kwargs):
        return dataclasses.replace(search(*args, **kwargs), answerable=value)

    searcher.search = forced  # type: ignore[method-assign]
    return searcher


class ReadyServer(uvicorn.Server):
    """uvicorn's server with an event set once start-up is over (listening, or given up),
    so a test waits for it instead of polling ``started``."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


@contextlib.contextmanager
def serve_in_thread(config: uvicorn.Config,
                    sockets: list[socket.socket] | None = None) -> Iterator[str]:
    """The app of ``config`` under a real uvicorn in a thread; yields its base URL once it
    listens, and stops (and joins) it on exit."""
    server = ReadyServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    try:
        # 120 s only bounds a server that hangs while loading; a failed start sets the
        # event at once and fails here with the reason in the log.
        assert server.ready.wait(120) and server.started, "uvicorn did not start"
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
