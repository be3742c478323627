"""Two `qa serve` replicas behind one Milvus: milvus-lite run as one standalone gRPC server
(`qa milvus-server --data-dir D --port P`), which any number of processes reach at
`QA_MILVUS_URI=http://127.0.0.1:P` (a milvus-lite *file* URI opens in one process only).
Both replicas answer the same questions identically, both pick up a new generation written
through either of them without a restart, and a write through one is seen through the other
(docs/SCALING.md, "Several replicas behind one Milvus"); a third replica started with no
index folder at all serves the same. Real processes, the hashing fake
embedder. A replica's Milvus connections sit idle for longer than pymilvus's 10 s keepalive
here, which milvus-lite's own `milvus-lite server` answers with GOAWAY "too_many_pings"."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CORPUS, ROOT

pytestmark = pytest.mark.slow

KEY = "replica-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
START_S = 120.0  # bounded waits: a process start, a build of the small corpus, under load
QUESTIONS = ["武汉产业发展", "中部地区崛起", "一主引领", "长江经济带 生态保护", "科技创新 人才",
             "光谷", "疫情防控", "What are the development goals of Wuhan?"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Callable[[], Any], what: str, proc: list[subprocess.Popen] | None = None,
           deadline_s: float = START_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``deadline_s`` or as
    soon as one of ``proc`` has exited."""
    end = time.monotonic() + deadline_s
    while True:
        got = check()
        if got:
            return got
        for p in proc or []:
            if p.poll() is not None:
                raise AssertionError(f"{what}: process {p.args} exited with {p.returncode}")
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline_s:.0f} s")
        time.sleep(0.1)


def _env(uri: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(QA_EMBEDDER="hashing", QA_ALLOW_DOWNLOAD="false", QA_VECTOR_BACKEND="milvus",
               QA_MILVUS_URI=uri, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(ROOT), **extra)
    return env


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def milvus_server(tmp_path: Path) -> Iterator[str]:
    """One milvus-lite server process on a free loopback port; its URI."""
    port = _free_port()
    log = (tmp_path / "milvus.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "qa", "milvus-server", "--data-dir",
                             str(tmp_path / "milvus"), "--port", str(port)],
                            env=_env(""), stdout=log, stderr=subprocess.STDOUT)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            return False

    try:
        try:
            _until(listening, "milvus-lite server", [proc], deadline_s=30)
        except AssertionError as exc:
            pytest.skip(f"milvus-lite could not start a server ({exc}): "
                        f"{(tmp_path / 'milvus.log').read_text()[-500:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


def _ready(base: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"{base}/readyz", timeout=5)
    except httpx.TransportError:
        return None
    return r.json() if r.status_code == 200 else None


def _search(base: str, query: str, mode: str = "auto") -> list[tuple[str, int, float]]:
    r = httpx.post(f"{base}/search", json={"query": query, "top_k": 5, "mode": mode},
                   timeout=30)
    assert r.status_code == 200, r.text
    return [(h["doc_id"], h["paragraph"], h["score"]) for h in r.json()["results"]]


def _served_by_both(replicas: list[str], generation: str) -> bool:
    return all((_ready(b) or {}).get("index") == generation for b in replicas)


def test_two_replicas_share_one_milvus(milvus_server, tmp_path):
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    absent = tmp_path / "no-index-here"
    shutil.copytree(CORPUS, corpus)
    env = _env(milvus_server, QA_API_KEY=KEY)
    subprocess.run([sys.executable, "-m", "qa", "index", "--corpus", str(corpus), "--index",
                    str(index)], env=env, check=True, capture_output=True, timeout=300)
    first = (index / "CURRENT").read_text().strip()

    procs: list[subprocess.Popen] = []
    replicas: list[str] = []
    try:
        # Replica C has no index folder at all: everything it serves comes from Milvus.
        for name, folder in (("a", index), ("b", index), ("c", absent)):
            port = _free_port()
            log = (tmp_path / f"serve-{name}.log").open("w")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "qa", "serve", "--port", str(port), "--corpus",
                 str(corpus), "--index", str(folder)], env=env, stdout=log,
                stderr=subprocess.STDOUT))
            replicas.append(f"http://127.0.0.1:{port}")
        a, b, c = replicas
        for base in replicas:
            ready = _until(lambda base=base: _ready(base), f"{base}/readyz", procs)
            assert ready["index"] == first
            assert ready["vector_index"]["engine"] == "milvus"
            assert ready["vector_index"]["uri"] == milvus_server

        # The same questions, the same answers: ids, order and scores.
        for q in QUESTIONS:
            for mode in ("auto", "lexical"):
                got = _search(a, q, mode)
                assert got == _search(b, q, mode) == _search(c, q, mode), (q, mode)
        assert httpx.get(f"{a}/documents").json() == httpx.get(f"{c}/documents").json()
        assert _search(a, "一主引领", "lexical")

        # A write through replica A: both serve the new generation without a restart.
        text = "武汉将在光谷建设一座量子钟塔实验室。\n量子钟塔用于精密授时。\n"
        r = httpx.post(f"{a}/documents", files={"file": ("量子钟塔.txt", text.encode(),
                                                           "text/plain")},
                       headers=AUTH, timeout=30)
        assert r.status_code == 202, r.text
        assert not any(d == "量子钟塔" for d, _, _ in _search(b, "量子钟塔", "lexical"))

        def new_generation() -> str | None:
            # The status a client polls (through the other replica), then both serving.
            doc = httpx.get(f"{b}/documents/量子钟塔", timeout=10)
            if doc.status_code != 200 or doc.json()["status"] != "ready":
                return None
            cur = (index / "CURRENT").read_text().strip()
            return cur if cur != first and _served_by_both(replicas, cur) else None

        second = _until(new_generation, "both replicas on the generation after the upload",
                        procs)
        hits = _search(b, "量子钟塔", "lexical")
        assert hits and hits[0][0] == "量子钟塔"
        for q in [*QUESTIONS, "量子钟塔 授时"]:
            assert _search(a, q) == _search(b, q) == _search(c, q), q

        # ... and a write through replica B (a removal) is seen through A.
        r = httpx.delete(f"{b}/documents/量子钟塔", headers=AUTH, timeout=30)
        assert r.status_code == 202, r.text

        def third_generation() -> str | None:
            if httpx.get(f"{a}/documents/量子钟塔", timeout=10).status_code != 404:
                return None
            cur = (index / "CURRENT").read_text().strip()
            return cur if cur not in (first, second) and _served_by_both(replicas, cur) else None

        _until(third_generation, "both replicas on the generation after the removal", procs)
        assert not any(d == "量子钟塔" for d, _, _ in _search(a, "量子钟塔", "lexical"))
        for q in QUESTIONS:
            assert _search(a, q) == _search(b, q) == _search(c, q), q
    finally:
        for p in procs:
            _stop(p)
    assert not absent.exists()  # replica C wrote nothing either
    for name in ("a", "b", "c"):  # no Milvus connection was dropped on the way
        assert "too_many_pings" not in (tmp_path / f"serve-{name}.log").read_text()
