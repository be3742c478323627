"""Ray builds (qa.index.distributed): a generation embedded by two encoder actors on a local
Ray instance equals a single-process build, chunk for chunk and vector for vector, answers
the same, and stays incremental."""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import ray  # noqa: F401 - in the test extra: a missing Ray is a broken install, not a skip

from qa.encoders.base import HashingEmbedder
from qa.errors import IndexMismatch
from qa.index.build import build_index
from qa.index.load import open_index
from qa.index.manifest import current_generation
from qa.retrieve.search import Searcher

# Long-running: `pytest -m "not slow"` skips it during development; CI runs it.
pytestmark = pytest.mark.slow

DIGEST = "wuhan-9th-plenary-digest-2020-06-28"
QUERIES = ["院士 高校", "长江新区", "新冠肺炎疫情防控", "What did Wuhan say about universities?"]


@pytest.fixture(scope="module")
def ray_pool():
    """Two encoder actors (hashing fake) on a local two-CPU Ray instance."""
    from qa.index.distributed import RayEmbed

    try:
        pool = RayEmbed("local", HashingEmbedder, HashingEmbedder().fingerprint, workers=2,
                        batch_size=8)
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported, not hidden
        pytest.skip(f"a local Ray instance could not start here: {exc!r}")
    yield pool
    pool.close()


def _chunks(gen: Path) -> list[tuple]:
    with sqlite3.connect(gen / "chunks.sqlite") as db:
        return db.execute("SELECT * FROM chunks ORDER BY row").fetchall()


class Counting:
    """An EmbedFn wrapper that records what was sent to Ray."""

    def __init__(self, inner) -> None:
        self.inner, self.sent = inner, 0

    def __call__(self, texts, progress=None):
        self.sent += len(texts)
        return self.inner(texts, progress)


def test_ray_build_equals_single_process_build(tmp_path, corpus_dir, ray_pool, fake_embedder):
    local = build_index(corpus_dir, tmp_path / "local", fake_embedder)
    seen: list[int] = []
    remote = build_index(corpus_dir, tmp_path / "ray", fake_embedder, embed_passages=ray_pool,
                         progress=lambda _s, done, _t: seen.append(done))
    assert remote.embedded == local.embedded > 0 and seen[-1] == max(seen) > 0
    a, b = current_generation(tmp_path / "local"), current_generation(tmp_path / "ray")
    assert _chunks(a) == _chunks(b)
    for name in ("vectors.npy", "sentences.npy", "hub_en.npy"):
        np.testing.assert_allclose(np.load(b / name), np.load(a / name), atol=1e-6)
    np.testing.assert_array_equal(np.load(b / "sentence_offsets.npy"),
                                  np.load(a / "sentence_offsets.npy"))
    sa = Searcher(open_index(tmp_path / "local", fake_embedder), fake_embedder)
    sb = Searcher(open_index(tmp_path / "ray", fake_embedder), fake_embedder)
    for q in QUERIES:
        ha, hb = sa.search(q, top_k=5).hits, sb.search(q, top_k=5).hits
        assert [h.chunk.chunk_id for h in ha] == [h.chunk.chunk_id for h in hb]
        np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=1e-6)


def test_ray_build_is_incremental(tmp_path, corpus_dir, ray_pool, fake_embedder):
    index_dir = tmp_path / "index"
    build_index(corpus_dir, index_dir, fake_embedder, embed_passages=ray_pool)
    path = corpus_dir / f"{DIGEST}.md"
    path.write_text(path.read_text(encoding="utf-8") + "\n\n新增一段关于长江新区的内容。\n",
                    encoding="utf-8")
    counting = Counting(ray_pool)
    report = build_index(corpus_dir, index_dir, fake_embedder, embed_passages=counting)
    assert report.changed == [DIGEST] and report.unchanged
    # Only the changed document's passages (and their sentences) went to Ray.
    assert counting.sent == report.embedded + report.sentences_embedded
    assert report.embedded < report.chunks
    fresh = build_index(corpus_dir, tmp_path / "fresh", fake_embedder)
    assert fresh.chunks == report.chunks
    np.testing.assert_allclose(np.load(current_generation(index_dir) / "vectors.npy"),
                               np.load(current_generation(tmp_path / "fresh") / "vectors.npy"),
                               atol=1e-6)


def test_workers_with_other_weights_are_refused(ray_pool):
    from qa.index.distributed import RayEmbed

    # Same Ray instance (its two CPUs held by the pool's actors, hence a CPU-less actor);
    # the worker builds a 128-d fake, the driver has the 256-d one.
    with pytest.raises(IndexMismatch, match="same model on every node"):
        RayEmbed("local", partial(HashingEmbedder, 128), HashingEmbedder().fingerprint,
                 workers=1, cpus_per_worker=0)
