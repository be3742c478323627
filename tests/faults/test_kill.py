"""kill -9 during `qa index`, at 25 instrumented points of a build (every file written, each
fsync and rename, the switch of CURRENT, the removal of old generations) and at random delays
of a real `python -m qa index`. After each kill the live generation is complete (every byte
checks out) and served with the right answers, and the next `qa index` succeeds and cleans
up what the killed one left."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qa.config import Settings
from qa.index.build import build_index
from qa.index.integrity import verify_files
from qa.index.manifest import current_generation, read_manifest
from tests.conftest import ROOT
from tests.faults.conftest import QUERIES, app_client, top_chunks

# Long-running: `pytest -m "not slow"` skips it during development; CI runs it.
pytestmark = pytest.mark.slow

ADDED = ("added-note", "武汉新建了一座量子计算实验室。\n")
KILLED = ("killed-note", "长江新区将建设一座深海观测站。\n")

# (function, n-th call, before or after it runs): in the order a build reaches them.
POINTS = [
    ("qa.index.generations.verify_files", 1, "before"),
    ("qa.index.build.mine_terms", 1, "after"),
    ("qa.index.build.StoreWriter", 1, "after"),  # the store begun, nothing embedded
    ("qa.index.build._embed_window", 1, "before"),
    ("qa.index.build._embed_window", 1, "after"),  # vectors being appended to their files
    ("numpy.save", 1, "before"),  # the vector files complete, no index written yet
    ("numpy.save", 1, "after"),
    ("qa.index.vectors.faiss.write_flat", 1, "after"),
    ("numpy.save", 2, "before"),
    ("numpy.save", 2, "after"),
    ("qa.index.vectors.faiss.write_flat", 2, "before"),
    ("numpy.save", 3, "after"),
    ("scipy.sparse.save_npz", 1, "before"),
    ("scipy.sparse.save_npz", 1, "after"),
    ("qa.index.manifest.record_files", 1, "before"),
    ("os.fsync", 1, "before"),
    ("os.fsync", 12, "after"),  # the manifest is on disk, the folder not yet renamed
    ("os.replace", 1, "before"),
    ("os.replace", 1, "after"),  # a complete generation that CURRENT does not name yet
    ("os.fsync", 14, "after"),  # CURRENT.tmp written, not yet switched
    ("os.replace", 2, "before"),
    ("os.replace", 2, "after"),  # switched: the new generation is live
    ("qa.index.build.remove_unused", 1, "before"),
    ("shutil.rmtree", 1, "before"),
    ("os.unlink", 3, "before"),  # half way through deleting an old generation
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(QA_EMBEDDER="hashing", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))
    return env


@dataclass
class Base:
    path: Path
    expected: dict[str, list[str]]


@pytest.fixture(scope="module")
def base(pristine, embedder, tmp_path_factory) -> Base:
    """Two generations (pristine, then one more document): a build has one to replace and
    one to remove; and the answers the live one gives."""
    root = tmp_path_factory.mktemp("kill-base")
    settings = pristine.copy(root / "state")
    (settings.corpus_dir / f"{ADDED[0]}.txt").write_text(ADDED[1], encoding="utf-8")
    build_index(settings.corpus_dir, settings.index_dir, embedder)
    assert len(list(settings.index_dir.glob("g-*"))) == 2
    with app_client(settings, embedder) as c:
        expected = {q: top_chunks(c.post("/search", json={"query": q, "top_k": 5}).json())
                    for q in QUERIES}
        c.app.state.qa.close()
    return Base(root / "state", expected)


@pytest.fixture(scope="module")
def driver() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.kill_driver"], cwd=ROOT,
                            env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    yield proc
    proc.stdin.close()
    proc.wait(60)


def _state(base: Base, dest: Path) -> Settings:
    shutil.copytree(base.path, dest)
    (dest / "corpus" / f"{KILLED[0]}.txt").write_text(KILLED[1], encoding="utf-8")
    return Settings(corpus_dir=dest / "corpus", index_dir=dest / "index", embedder="hashing")


def _found(c, text: str, doc_id: str) -> bool:
    body = c.post("/search", json={"query": text, "top_k": 3, "mode": "lexical"}).json()
    return any(p["doc_id"] == doc_id for p in body["results"])


def _check_after_kill(settings: Settings, before: str, embedder, base: Base) -> None:
    live = current_generation(settings.index_dir)
    assert live is not None and live.name != ""
    verify_files(live, read_manifest(live), full=True)  # complete, every byte
    with app_client(settings, embedder) as c:
        assert c.get("/readyz").json()["status"] == "ready"
        assert _found(c, "量子计算实验室", ADDED[0])
        killed_doc_live = _found(c, "深海观测站", KILLED[0])
        if live.name == before:  # the previous generation, untouched and served
            assert not killed_doc_live
            for q, chunks in base.expected.items():
                r = c.post("/search", json={"query": q, "top_k": 5})
                assert r.status_code == 200 and top_chunks(r.json()) == chunks
        else:  # killed after the switch: the new generation is complete and live
            assert killed_doc_live
        # The next `qa index` succeeds, and the service answers from it.
        report = build_index(settings.corpus_dir, settings.index_dir, embedder)
        assert report.nothing_changed or KILLED[0] in report.added
        assert _found(c, "深海观测站", KILLED[0])
    index = settings.index_dir
    assert not list(index.glob(".building-*")) and not (index / "CURRENT.tmp").exists()
    assert len(list(index.glob("g-*"))) <= 2


@pytest.mark.parametrize("target, nth, when", POINTS,
                         ids=[f"{t.rsplit('.', 1)[1]}-{n}-{w}" for t, n, w in POINTS])
def test_kill_at_a_point_of_the_build(base, driver, tmp_path, embedder,
                                      target, nth, when):
    settings = _state(base, tmp_path / "state")
    before = current_generation(settings.index_dir).name
    request = {"corpus": str(settings.corpus_dir), "index": str(settings.index_dir),
               "target": target, "nth": nth, "when": when}
    driver.stdin.write(json.dumps(request) + "\n")
    driver.stdin.flush()
    answer = json.loads(driver.stdout.readline())
    assert answer == {"signal": signal.SIGKILL}, f"the build never reached {target}#{nth}"
    _check_after_kill(settings, before, embedder, base)


def test_kill_a_real_qa_index_at_random_delays(base, tmp_path, embedder):
    """`python -m qa index` in a subprocess, killed after random delays spread over the time
    a whole build took here (measured first)."""
    measured = _state(base, tmp_path / "measure")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qa", "index", "--corpus", str(measured.corpus_dir),
                    "--index", str(measured.index_dir)], cwd=ROOT, env=_env(), check=True,
                   capture_output=True, timeout=300)
    full = time.perf_counter() - started
    rng = random.Random(11)
    for i, share in enumerate(sorted(rng.uniform(0.2, 1.0) for _ in range(3))):
        settings = _state(base, tmp_path / f"kill{i}")
        before = current_generation(settings.index_dir).name
        proc = subprocess.Popen([sys.executable, "-m", "qa", "index",
                                 "--corpus", str(settings.corpus_dir),
                                 "--index", str(settings.index_dir)], cwd=ROOT, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=share * full)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        _check_after_kill(settings, before, embedder, base)
