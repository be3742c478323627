"""Shared pieces of the fault-injection suite: a pristine index of the shipped corpus built
once with the hashing embedder, copies of it to damage, the answers it gives, an app on a
copy, and a real uvicorn on a loopback socket for what only a real server shows (slow
clients, keep-alive connections, client disconnects)."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app
from qa.config import Settings
from qa.encoders.base import HashingEmbedder
from qa.index.build import build_index
from tests.conftest import CORPUS
from tests.helpers import serve_in_thread

FAULTS = Path(__file__).resolve().parent
QUERIES = ["光芯屏端网", "武汉有多少名院士", "How many academicians does Wuhan have?"]
DIGEST = "wuhan-9th-plenary-digest-2020-06-28"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if FAULTS in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@dataclass
class Pristine:
    """The shipped corpus, indexed once, and the top chunks of ``QUERIES`` on it."""

    root: Path
    expected: dict[str, list[str]]

    def copy(self, dest: Path) -> Settings:
        shutil.copytree(self.root, dest)
        return Settings(corpus_dir=dest / "corpus", index_dir=dest / "index",
                        embedder="hashing", allow_download=False)


@pytest.fixture(scope="session")
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory, embedder: HashingEmbedder) -> Pristine:
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(CORPUS, root / "corpus")
    build_index(root / "corpus", root / "index", embedder)
    settings = Settings(corpus_dir=root / "corpus", index_dir=root / "index",
                        embedder="hashing")
    with TestClient(create_app(settings, embedder=embedder, background=False)) as c:
        expected = {q: top_chunks(c.post("/search", json={"query": q, "top_k": 5}).json())
                    for q in QUERIES}
        c.app.state.qa.close()  # release the generation before copies are made of it
    return Pristine(root, expected)


def top_chunks(body: dict[str, Any]) -> list[str]:
    return [p["chunk_id"] for p in body["results"]]


@contextlib.contextmanager
def app_client(settings: Settings, embedder: HashingEmbedder,
               reload_check_s: float = 0.0) -> Iterator[TestClient]:
    app = create_app(settings, embedder=embedder, background=False)
    app.state.qa.reload_check_s = reload_check_s
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@contextlib.contextmanager
def live_server(app: Any, settings: Settings) -> Iterator[tuple[str, int]]:
    """``app`` under uvicorn as ``qa serve`` runs it, on a free loopback port, in a thread;
    stopped (and joined) on exit."""
    from qa.api.server import server_config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    try:
        with serve_in_thread(server_config(app, settings, log_level="warning"), [sock]):
            yield host, port
    finally:
        sock.close()
