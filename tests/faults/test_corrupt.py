"""Damaged index files: every kind of file of a generation truncated, overwritten (bytes
flipped) or reordered (rows swapped, same size). Nothing wrong is ever served: every route
answers 503 ``index_corrupt`` naming the file (never a 500, never the absolute path), `qa index
--verify` names it too, and `qa index` without --force repairs it."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from qa.cli import main
from qa.errors import IndexCorrupt
from qa.index.build import build_index
from qa.index.manifest import current_generation
from qa.index.store import ChunkStore
from tests.faults.conftest import DIGEST, QUERIES, app_client, top_chunks

FILES = ["manifest.json", "vectors.faiss", "vectors.npy", "sentences.faiss", "sentences.npy",
         "sentence_offsets.npy", "hub_en.npy", "question_rows.npy", "chunks.sqlite",
         "bm25.npz", "bm25_idf.npy", "bm25_vocab.json"]


def _npy_rows(path: Path) -> tuple[int, int]:
    """(offset of the data, bytes per row) of a .npy file."""
    with open(path, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if major == 1
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(fh)
        row = dtype.itemsize * (int(np.prod(shape[1:])) if len(shape) > 1 else 1)
        return fh.tell(), row


def _rows_of(path: Path) -> tuple[int, int]:
    """Where the rows of a file are and how long one is, so that a swap keeps its size and
    its structure: vectors, pages, or plain blocks."""
    size = path.stat().st_size
    if path.suffix == ".npy":
        return _npy_rows(path)
    if path.suffix == ".faiss":  # a flat index ends with its n x dim float32 rows
        n = np.load(path.with_suffix(".npy"), mmap_mode="r").shape
        return size - n[0] * n[1] * 4, n[1] * 4
    if path.suffix == ".sqlite":
        with sqlite3.connect(path) as conn:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
        return page, page  # every page but the header page
    return size // 4, 16


def reorder(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start, row = _rows_of(path)
    rows = [data[i:i + row] for i in range(start, len(data) - row + 1, row)]
    a = 0
    b = next(i for i in range(len(rows) - 1, 0, -1) if rows[i] != rows[a])
    lo, hi = start + a * row, start + b * row
    data[lo:lo + row], data[hi:hi + row] = rows[b], rows[a]
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(1, 8):
        data[i * len(data) // 8 - 1] ^= 0x5A
    path.write_bytes(bytes(data))


DAMAGE = {"truncate": truncate, "flip": flip, "reorder": reorder}


def _routes(c) -> dict[str, object]:
    return {
        "POST /search": c.post("/search", json={"query": QUERIES[0]}),
        "GET /search": c.get("/search", params={"q": QUERIES[1]}),
        "GET /documents": c.get("/documents"),
        "GET /documents/{id}": c.get(f"/documents/{DIGEST}"),
        "POST /answer": c.post("/answer", json={"question": QUERIES[1]}),
        "POST /tools/search_passages": c.post("/tools/search_passages",
                                              json={"query": QUERIES[2]}),
        "GET /readyz": c.get("/readyz"),
    }


def qa_cli(*args: str) -> int:
    """Run the ``qa`` command in-process; its exit status."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _assert_corrupt(resp, name: str, root: Path) -> None:
    assert resp.status_code == 503, resp.text
    err = resp.json()["error"]
    assert err["code"] == "index_corrupt"
    assert name in err["message"] and "qa index" in err["message"]
    assert str(root) not in err["message"] and "Traceback" not in resp.text


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("name", FILES)
def test_damaged_file_is_never_served_and_qa_index_repairs_it(pristine, embedder, tmp_path,
                                                              capsys, name, damage):
    settings = pristine.copy(tmp_path / "copy")
    gen = current_generation(settings.index_dir)
    before = (gen / name).read_bytes()
    DAMAGE[damage](gen / name)
    assert (gen / name).read_bytes() != before

    with app_client(settings, embedder) as c:
        for route, resp in _routes(c).items():
            assert resp.status_code != 500, route
            _assert_corrupt(resp, name, tmp_path)
        assert c.get("/healthz").status_code == 200

        assert qa_cli("index", "--verify", "--index", str(settings.index_dir)) == 1
        assert name in capsys.readouterr().err

        # `qa index`, no --force: the damaged generation is rebuilt, not copied from.
        report = build_index(settings.corpus_dir, settings.index_dir, embedder)
        assert report.generation != gen.name and report.embedded == report.chunks
        assert any(name in note and "rebuilt from scratch" in note for note in report.notes)
        # The running service picks the repaired generation up.
        for q, chunks in pristine.expected.items():
            r = c.post("/search", json={"query": q, "top_k": 5})
            assert r.status_code == 200 and top_chunks(r.json()) == chunks
        assert c.get("/readyz").json()["status"] == "ready"
    assert qa_cli("index", "--verify", "--index", str(settings.index_dir)) == 0


def test_damage_under_a_running_service_is_noticed(pristine, embedder, tmp_path):
    """The SQLite store is read lazily, during requests: damage after loading is caught by
    the reload check (a file of the served generation changed) and answered 503."""
    settings = pristine.copy(tmp_path / "copy")
    with app_client(settings, embedder) as c:
        assert c.post("/search", json={"query": QUERIES[0]}).status_code == 200
        truncate(current_generation(settings.index_dir) / "chunks.sqlite")
        for resp in _routes(c).values():
            _assert_corrupt(resp, "chunks.sqlite", tmp_path)


def test_sqlite_damage_at_query_time_is_a_503_not_a_500(pristine, embedder, tmp_path):
    """Without a reload check in between, SQLite's own error is translated at query time. A
    thread whose connection still caches the pages may answer from them, correctly."""
    settings = pristine.copy(tmp_path / "copy")
    with app_client(settings, embedder) as c:
        c.app.state.qa._checked_at = float("inf")  # no reload check during this test
        with open(current_generation(settings.index_dir) / "chunks.sqlite", "r+b") as fh:
            fh.truncate(4096)  # only the header page is left
        resp = c.post("/search", json={"query": QUERIES[0], "top_k": 5})
        if resp.status_code != 200:
            _assert_corrupt(resp, "chunks.sqlite", tmp_path)
        else:
            assert top_chunks(resp.json()) == pristine.expected[QUERIES[0]]
        for route in ("GET /documents/{id}", "POST /tools/search_passages"):
            assert _routes(c)[route].status_code in (200, 503)


def test_chunk_store_translates_sqlite_errors_in_every_thread(pristine, tmp_path):
    settings = pristine.copy(tmp_path / "copy")
    store = ChunkStore(current_generation(settings.index_dir) / "chunks.sqlite")
    with open(store.path, "r+b") as fh:
        fh.truncate(4096)
    errors: list[BaseException] = []

    def read() -> None:  # a thread's first read: a new connection, nothing cached
        try:
            store.get([3, 50])
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 3 and all(isinstance(e, IndexCorrupt) for e in errors)
    assert all(e.file == "chunks.sqlite" and str(tmp_path) not in e.message for e in errors)
    store.close()


def test_verify_passes_on_a_sound_index_and_names_the_generation(pristine, tmp_path, capsys):
    settings = pristine.copy(tmp_path / "copy")
    assert qa_cli("index", "--verify", "--index", str(settings.index_dir), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["files"] == len(FILES) - 1  # all but the manifest itself
    assert out["generation"] == current_generation(settings.index_dir).name


def test_a_damaged_previous_generation_is_never_copied_forward(pristine, embedder, tmp_path):
    """Reordered vectors with a changed document: the unchanged document's vectors must not
    be reused from the damaged generation (they were, into every later generation)."""
    settings = pristine.copy(tmp_path / "copy")
    reorder(current_generation(settings.index_dir) / "vectors.npy")
    doc = settings.corpus_dir / f"{DIGEST}.md"
    doc.write_text(doc.read_text(encoding="utf-8") + "\n\n新增一段。\n", encoding="utf-8")
    report = build_index(settings.corpus_dir, settings.index_dir, embedder)
    assert report.unchanged == [] and report.embedded == report.chunks
    fresh = build_index(settings.corpus_dir, tmp_path / "fresh", embedder, force=True)
    assert fresh.chunks == report.chunks
    a = np.load(current_generation(settings.index_dir) / "vectors.npy")
    b = np.load(current_generation(tmp_path / "fresh") / "vectors.npy")
    assert np.array_equal(a, b)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage", b"../../etc", b"g-nope"])
def test_a_damaged_current_pointer(pristine, embedder, tmp_path, content):
    """CURRENT naming no valid generation: a running service keeps what it serves, a new
    one answers 503 saying to build, and `qa index` builds afresh."""
    settings = pristine.copy(tmp_path / "copy")
    with app_client(settings, embedder) as running:
        (settings.index_dir / "CURRENT").write_bytes(content)
        r = running.post("/search", json={"query": QUERIES[0], "top_k": 5})
        assert r.status_code == 200 and top_chunks(r.json()) == pristine.expected[QUERIES[0]]
        with app_client(settings, embedder) as fresh:
            r = fresh.post("/search", json={"query": QUERIES[0]})
            assert r.status_code == 503 and "qa index" in r.json()["error"]["message"]
        report = build_index(settings.corpus_dir, settings.index_dir, embedder)
        assert not report.nothing_changed
        r = running.post("/search", json={"query": QUERIES[0], "top_k": 5})
        assert r.status_code == 200 and top_chunks(r.json()) == pristine.expected[QUERIES[0]]
        assert running.get("/readyz").json()["index"] == report.generation
