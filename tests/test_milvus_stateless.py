"""A replica with no index folder at all: with the Milvus backend the whole generation is
published to Milvus (vectors, lexical leg, chunk store, documents and their text, hubness,
offsets, question flags, the manifest and the CURRENT pointer), so a service whose
``index_dir`` does not exist answers every reading route exactly as the local backend does,
citations included, and moves to a generation published later by a build elsewhere
(docs/SCALING.md, "Milvus as the whole index"). milvus-lite in a temporary folder, the
hashing fake embedder (both backends then get bit-identical vectors)."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np
import pymilvus
import pytest
from fastapi.testclient import TestClient

from qa.api import create_app
from qa.config import Settings
from qa.encoders.base import HashingEmbedder
from qa.encoders.ensemble import WithSecond
from qa.errors import IndexNotReady
from qa.index import milvus_registry
from qa.index.build import build_index
from qa.index.load import open_index
from qa.index.vectors.milvus import MilvusRows
from qa.index.vectors.store import VectorStore
from qa.retrieve.search import Searcher
from tests.conftest import CORPUS

pytestmark = pytest.mark.slow

DIGEST = "wuhan-9th-plenary-digest-2020-06-28"
QUESTIONS = ["武汉产业发展", "中部地区崛起", "一主引领", "長江經濟帶 生态保护", "科技创新 人才",
             "光谷", "疫情防控", "What are the development goals of Wuhan?", "巴黎今天的天气怎么样?"]


def _same(a: dict, b: dict) -> None:
    """Two /search or /answer bodies agree: every field equal, scores to float rounding
    (Milvus sums a query's BM25 weights in float64, docs/SCALING.md)."""
    a, b = dict(a), dict(b)
    a.pop("took_ms", None), b.pop("took_ms", None)
    ra, rb = a.pop("results", a.pop("passages", [])), b.pop("results", b.pop("passages", []))
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], float):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key
        else:
            assert a[key] == b[key], key
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb, strict=True):
        sx, sy = x.pop("score"), y.pop("score")
        assert sx == pytest.approx(sy, abs=1e-4)
        lx, ly = x.pop("scores", {}), y.pop("scores", {})
        assert lx.keys() == ly.keys() and all(
            lx[k] == pytest.approx(ly[k], rel=1e-5, abs=1e-5) for k in lx)
        assert x == y  # doc, paragraph, offsets, text, citation, speaker, date, page ...


@pytest.fixture
def published(tmp_path: Path, fake_embedder):
    """The shipped corpus built twice: locally (FAISS) and, from another folder, into
    Milvus; the folder of the Milvus build is then deleted."""
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    build_index(corpus, tmp_path / "local", fake_embedder)
    store = VectorStore(backend="milvus", uri=str(tmp_path / "milvus.db"))
    build_index(corpus, tmp_path / "builder", fake_embedder, vector_store=store)
    shutil.rmtree(tmp_path / "builder")
    return corpus, store


def _app(settings: Settings, embedder) -> TestClient:
    return TestClient(create_app(settings, embedder=embedder, background=False))


def test_a_replica_without_an_index_folder_answers_like_the_local_backend(
        tmp_path, published, fake_embedder):
    corpus, store = published
    absent = tmp_path / "absent" / "index"
    common = {"corpus_dir": corpus, "embedder": "hashing", "allow_download": False}
    local = Settings(index_dir=tmp_path / "local", **common)
    remote = Settings(index_dir=absent, vector_backend="milvus", milvus_uri=store.uri, **common)
    with _app(local, fake_embedder) as a, _app(remote, fake_embedder) as b:
        ready = b.get("/readyz").json()
        assert ready["status"] == "ready" and ready["vector_index"]["engine"] == "milvus"
        assert ready["current"] == ready["index"]
        for q in QUESTIONS:
            for mode in ("auto", "dense", "lexical", "hybrid"):
                body = {"query": q, "top_k": 5, "mode": mode}
                ra, rb = a.post("/search", json=body), b.post("/search", json=body)
                assert ra.status_code == rb.status_code == 200, rb.text
                _same(ra.json(), rb.json())
            answer = {"question": q, "max_sentences": 2}
            _same(a.post("/answer", json=answer).json(), b.post("/answer", json=answer).json())
        only = {"query": "武汉", "top_k": 5, "doc_ids": [DIGEST]}
        got = b.post("/search", json=only).json()["results"]
        assert got and {h["doc_id"] for h in got} == {DIGEST}
        _same(a.post("/search", json=only).json(), b.post("/search", json=only).json())
        assert b.get("/search", params={"q": "x", "doc_id": "nope"}).status_code == 404

        # Documents: the list, one document's paragraphs, its text (what citations index).
        assert a.get("/documents").json() == b.get("/documents").json()
        for doc in a.get("/documents").json()["documents"]:
            doc_id = doc["doc_id"]
            assert a.get(f"/documents/{doc_id}").json() == b.get(f"/documents/{doc_id}").json()
            text = b.get(f"/documents/{doc_id}/text")
            assert text.status_code == 200 and text.text == a.get(f"/documents/{doc_id}/text").text
        for hit in b.post("/search", json={"query": "武汉", "top_k": 10}).json()["results"]:
            source = b.get(f"/documents/{hit['doc_id']}/text").text
            assert source[hit["char_start"]:hit["char_end"]] == hit["text"]
        call = {"doc_id": DIGEST, "paragraph": 10}
        assert a.post("/tools/get_passage", json=call).json() == \
            b.post("/tools/get_passage", json=call).json()
    assert not absent.exists() and not absent.parent.exists()  # nothing written either


def test_a_replica_moves_to_a_generation_published_by_a_build_elsewhere(
        tmp_path, published, fake_embedder):
    corpus, store = published
    settings = Settings(index_dir=tmp_path / "absent", corpus_dir=corpus, embedder="hashing",
                        allow_download=False, vector_backend="milvus", milvus_uri=store.uri)
    with _app(settings, fake_embedder) as client:
        client.app.state.qa.reload_check_s = 0.0  # read the registry on every request
        first = client.get("/readyz").json()["index"]
        assert client.get("/documents/量子钟塔").status_code == 404
        (corpus / "量子钟塔.txt").write_text("武汉将在光谷建设一座量子钟塔实验室。\n", "utf-8")
        report = build_index(corpus, tmp_path / "elsewhere", fake_embedder, vector_store=store)
        hits = client.post("/search", json={"query": "量子钟塔", "mode": "lexical"}).json()
        assert hits["results"][0]["doc_id"] == "量子钟塔"
        ready = client.get("/readyz").json()
        assert ready["index"] == ready["current"] == report.generation != first
        assert client.get("/documents/量子钟塔").json()["status"] == "ready"


def test_generations_retire_by_the_registry_not_by_file_locks(tmp_path, corpus_dir,
                                                              fake_embedder):
    store = VectorStore(backend="milvus", uri=str(tmp_path / "m.db"), retire_after_s=3600)

    def build() -> str:
        return build_index(corpus_dir, tmp_path / "index", fake_embedder, vector_store=store,
                           force=True).generation

    gens = [build(), build()]
    # A build that died after registering its generation, before it went live.
    orphan = "g-19990101-000000-dead00"
    milvus_registry.register(store, orphan)
    gens.append(build())

    def live() -> set[str]:
        client = pymilvus.MilvusClient(str(tmp_path / "m.db"))
        names = set(client.list_collections())
        client.close()
        return {g for g in gens if any(n.endswith(g.replace("-", "_")) for n in names)}

    # Replaced less than an hour ago: every generation is still there.
    assert live() == set(gens)
    assert milvus_registry.current(store) == gens[2]
    assert milvus_registry.retire(store) == []
    # Later: all but the live generation and the one it replaced go, the orphan with them.
    gone = milvus_registry.retire(store, now=time.time() + 7200)
    assert set(gone) == {gens[0], orphan}
    assert live() == {gens[1], gens[2]}
    loaded = open_index(tmp_path / "index", fake_embedder, store)
    assert loaded.path.name == gens[2]
    loaded.close()


def test_nothing_served_when_the_live_generation_is_gone(tmp_path, published, fake_embedder):
    _, store = published
    gen = milvus_registry.current(store)
    assert gen is not None
    milvus_registry.discard(store, gen)
    with pytest.raises(IndexNotReady, match="qa index"):
        open_index(tmp_path / "absent", fake_embedder, store)
    empty = VectorStore(backend="milvus", uri=store.uri, collection="other")
    with pytest.raises(IndexNotReady, match="no index in Milvus"):
        open_index(tmp_path / "absent", fake_embedder, empty)
    assert milvus_registry.needs_build(empty)


class _Jittered(HashingEmbedder):
    """The hashing fake with a little noise seeded by each text: its cosines between short
    texts are a handful of exact values, so which of many tied dictionary terms a vector
    search keeps is the engine's choice (FAISS and Milvus choose differently); real
    encoders do not tie."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.fingerprint += "+jitter"

    def embed_batch(self, texts, kind):
        out = super().embed_batch(texts, kind)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode()).digest()[:8], "little")
            out[row] += 0.02 * np.random.default_rng(seed).standard_normal(self.dim)
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def test_the_second_encoder_is_read_from_milvus(tmp_path, corpus_dir):
    pair = WithSecond(HashingEmbedder(), _Jittered(dim=64))
    build_index(corpus_dir, tmp_path / "local", pair)
    store = VectorStore(backend="milvus", uri=str(tmp_path / "m.db"))
    build_index(corpus_dir, tmp_path / "builder", pair, vector_store=store)
    shutil.rmtree(tmp_path / "builder")
    local = open_index(tmp_path / "local", pair)
    remote = open_index(tmp_path / "absent", pair, store)
    try:
        assert remote.second is not None and isinstance(remote.second.matrix, MilvusRows)
        assert local.second is not None and local.second.hub_en is not None
        assert (remote.second.hub_en == local.second.hub_en).all()
        rows = [0, 5, len(local.second.matrix) - 1]
        assert (remote.second.matrix[rows] == local.second.matrix[rows]).all()
        assert remote.second.vocab_terms == local.second.vocab_terms
        a, b = Searcher(local, pair), Searcher(remote, pair)
        english = ["What are the development goals of Wuhan?", "How is the 'Guanggu' "
                   "optical valley industry supported?", "Wuhan GDP 2025 science innovation",
                   "epidemic prevention and control"]
        for q in [*QUESTIONS, *english]:
            for mode in ("auto", "dense", "lexical"):
                ra, rb = a.search(q, 5, mode), b.search(q, 5, mode)
                assert [h.chunk.chunk_id for h in ra.hits] == \
                    [h.chunk.chunk_id for h in rb.hits], (q, mode)
                assert [h.score for h in ra.hits] == pytest.approx(
                    [h.score for h in rb.hits], abs=1e-4)
                assert ra.confidence == pytest.approx(rb.confidence, abs=1e-4)
                assert ra.diagnostics.keys() == rb.diagnostics.keys()
        # The English words were translated into corpus terms, and the translated leg
        # (a weighted BM25 search, in Milvus here) found the same chunks on both sides.
        assert b.second is not None and a.second is not None
        legs = [(a.second.translated(q.lower(), 100, None)[0],
                 b.second.translated(q.lower(), 100, None)[0]) for q in english]
        assert any(mine for _, mine in legs)
        for local_leg, milvus_leg in legs:
            assert local_leg.keys() == milvus_leg.keys()
            assert all(local_leg[r] == pytest.approx(milvus_leg[r], abs=1e-5) for r in local_leg)
    finally:
        local.close()
        remote.close()


def test_an_unchanged_build_publishes_when_the_registry_names_another(tmp_path, corpus_dir,
                                                                      fake_embedder):
    store = VectorStore(backend="milvus", uri=str(tmp_path / "m.db"))
    first = build_index(corpus_dir, tmp_path / "index", fake_embedder, vector_store=store)
    again = build_index(corpus_dir, tmp_path / "index", fake_embedder, vector_store=store)
    assert again.nothing_changed and again.generation == first.generation
    # Another builder (another folder) publishes; this folder's generation is no longer live.
    other = build_index(corpus_dir, tmp_path / "other", fake_embedder, vector_store=store)
    assert milvus_registry.current(store) == other.generation
    third = build_index(corpus_dir, tmp_path / "index", fake_embedder, vector_store=store)
    assert not third.nothing_changed and third.unchanged  # vectors reused from the folder
    assert milvus_registry.current(store) == third.generation
