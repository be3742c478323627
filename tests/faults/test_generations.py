"""Generations are retired, not yanked: a generation a request still uses survives the
switch (and the next build), every thread's SQLite connection is closed when it is retired,
/readyz reports what is actually served and why a reload failed, many concurrent requests
see no 5xx while builds switch generations, and a build with nothing changed writes
nothing."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter

import httpx
import pytest

from qa.api import create_app
from qa.encoders.base import HashingEmbedder
from qa.index.build import build_index
from qa.index.load import open_index
from qa.index.manifest import current_generation
from qa.index.store import ChunkStore
from tests.faults.conftest import DIGEST, QUERIES, app_client, live_server, top_chunks


def _touch_corpus(settings, i: int) -> None:
    (settings.corpus_dir / "note.txt").write_text(f"第{i}版说明：武汉建设新的实验室。\n",
                                                  encoding="utf-8")


def test_store_close_closes_every_threads_connection(pristine, tmp_path):
    settings = pristine.copy(tmp_path / "copy")
    store = ChunkStore(current_generation(settings.index_dir) / "chunks.sqlite")
    threads = [threading.Thread(target=store.get, args=([1, 2],)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conns = list(store._all)
    assert len(conns) == 4  # the opening thread's and one per reading thread
    store.close()
    for conn in conns:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")


def test_a_generation_in_use_survives_switches_until_released(pristine, embedder, tmp_path):
    settings = pristine.copy(tmp_path / "copy")
    with app_client(settings, embedder) as c:
        state = c.app.state.qa
        first = current_generation(settings.index_dir)
        with state.lease() as held:
            for i in range(2):  # two switches: the first generation is no longer "previous"
                _touch_corpus(settings, i)
                build_index(settings.corpus_dir, settings.index_dir, embedder)
                assert c.post("/search", json={"query": "实验室"}).status_code == 200
            assert state.searcher is not held and first.exists()
            # A thread that never read the old store opens its connection only now.
            out: list = []
            reader = threading.Thread(target=lambda: out.append(held.search(QUERIES[0], 5)))
            reader.start()
            reader.join()
            assert [h.chunk.chunk_id for h in out[0].hits] == pristine.expected[QUERIES[0]]
        # Released: closed, and the next build may delete it.
        assert held.index.store._closed
        _touch_corpus(settings, 9)
        build_index(settings.corpus_dir, settings.index_dir, embedder)
        assert not first.exists()


def test_a_held_generation_is_not_deleted_by_another_process_build(pristine, embedder,
                                                                   tmp_path):
    settings = pristine.copy(tmp_path / "copy")
    loaded = open_index(settings.index_dir, embedder)  # as another process would hold it
    for i in range(3):
        _touch_corpus(settings, i)
        build_index(settings.corpus_dir, settings.index_dir, embedder)
    assert loaded.path.exists() and loaded.store.count() > 0
    loaded.close()
    _touch_corpus(settings, 7)
    build_index(settings.corpus_dir, settings.index_dir, embedder)
    assert not loaded.path.exists() and len(list(settings.index_dir.glob("g-*"))) == 2


def test_readyz_reports_a_failed_reload_and_keeps_serving(pristine, embedder, tmp_path):
    settings = pristine.copy(tmp_path / "copy")
    with app_client(settings, embedder) as c:
        old = c.get("/readyz").json()["index"]
        # A build with another embedder: the service cannot use it, the old one stays.
        report = build_index(settings.corpus_dir, settings.index_dir, HashingEmbedder(dim=128))
        r = c.get("/readyz")
        assert r.status_code == 200
        ready = r.json()
        assert ready["status"] == "degraded" and ready["index"] == old
        assert ready["current"] == report.generation
        assert ready["reload_error"]["code"] == "index_mismatch"
        assert (settings.index_dir / old).is_dir()  # served, so still on disk
        r = c.post("/search", json={"query": QUERIES[0], "top_k": 5})
        assert r.status_code == 200 and top_chunks(r.json()) == pristine.expected[QUERIES[0]]
    # A fresh service has nothing it can serve: 503 with the reason, on every route.
    with app_client(settings, embedder) as c:
        for resp in (c.get("/readyz"), c.post("/search", json={"query": "武汉"}),
                     c.get(f"/documents/{DIGEST}")):
            assert resp.status_code == 503 and "index_mismatch" in resp.text


def test_readyz_names_a_damaged_new_generation(pristine, embedder, tmp_path):
    settings = pristine.copy(tmp_path / "copy")
    with app_client(settings, embedder) as c:
        old = c.get("/readyz").json()["index"]
        _touch_corpus(settings, 1)
        new = build_index(settings.corpus_dir, settings.index_dir, embedder,
                          ).generation
        c.app.state.qa._checked_at = float("inf")  # damage it before the service looks
        with open(settings.index_dir / new / "bm25.npz", "r+b") as fh:
            fh.truncate(100)
        c.app.state.qa._checked_at = 0.0
        ready = c.get("/readyz").json()
        assert ready["index"] == old and ready["status"] == "degraded"
        assert ready["reload_error"]["code"] == "index_corrupt"
        assert "bm25.npz" in ready["reload_error"]["message"]


def test_reload_during_requests_never_fails_a_request(pristine, embedder, tmp_path):
    """Eight clients on a real server while five builds switch generations under them:
    every answer is a 200 with documents of the corpus."""
    settings = pristine.copy(tmp_path / "copy")
    app = create_app(settings, embedder=embedder, background=False)
    app.state.qa.reload_check_s = 0.0
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    stop = threading.Event()
    known = {"wuhan-11th-plenary-press-conference-2021-07-26", DIGEST, "note"}

    def client(base: str, n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            i = 0
            while not stop.is_set() or i < 3:
                i += 1
                try:
                    if (i + n) % 3 == 0:
                        r = http.get(f"/documents/{DIGEST}")
                    elif (i + n) % 3 == 1:
                        r = http.post("/tools/search_passages", json={"query": "武汉 实验室"})
                    else:
                        r = http.post("/search", json={"query": "实验室", "top_k": 5})
                except httpx.HTTPError as exc:
                    problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                statuses[r.status_code] += 1
                if r.status_code == 200 and "results" in r.json():
                    docs = {p["doc_id"] for p in r.json()["results"]}
                    if not docs <= known:
                        problems.append(f"unknown documents {docs - known}")

    with live_server(app, settings) as (host, port):
        threads = [threading.Thread(target=client, args=(f"http://{host}:{port}", n))
                   for n in range(8)]
        for t in threads:
            t.start()
        try:
            for i in range(5):
                _touch_corpus(settings, i)
                build_index(settings.corpus_dir, settings.index_dir, embedder)
        finally:
            stop.set()
            for t in threads:
                t.join(120)
    assert not problems, problems[:5]
    assert set(statuses) == {200} and sum(statuses.values()) > 40, statuses


def test_nothing_changed_writes_nothing_and_metadata_changes_are_changes(pristine, embedder,
                                                                         tmp_path):
    settings = pristine.copy(tmp_path / "copy")
    gen = current_generation(settings.index_dir)
    pointer = (settings.index_dir / "CURRENT").stat().st_mtime_ns
    report = build_index(settings.corpus_dir, settings.index_dir, embedder)
    assert report.nothing_changed and report.generation == gen.name
    assert "nothing changed" in report.summary()
    assert [p.name for p in settings.index_dir.glob("g-*")] == [gen.name]
    assert (settings.index_dir / "CURRENT").stat().st_mtime_ns == pointer
    # A new title in the sidecar is a change, though the text is not: no vector is redone.
    meta = settings.corpus_dir / f"{DIGEST}.meta.json"
    data = json.loads(meta.read_text(encoding="utf-8"))
    meta.write_text(json.dumps({**data, "title": "新的标题"}, ensure_ascii=False),
                    encoding="utf-8")
    changed = build_index(settings.corpus_dir, settings.index_dir, embedder)
    assert not changed.nothing_changed and changed.embedded == 0
    with app_client(settings, embedder) as c:
        assert c.get(f"/documents/{DIGEST}").json()["title"] == "新的标题"
    # Another vector engine configuration is a change too.
    assert not build_index(settings.corpus_dir, settings.index_dir, embedder,
                           hnsw_threshold=10).nothing_changed
