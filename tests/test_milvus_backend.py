"""Milvus as the retrieval backend (vectors and the lexical leg, milvus-lite in a temporary
folder): a generation keeps no BM25 file, the lexical leg (our BM25 weights as sparse
vectors) finds exact Chinese terms and scores exactly as the local BM25, old generations'
collections are dropped, and on the shipped corpus and an XQuAD slice it ranks like the
local backend (docs/SCALING.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymilvus
import pytest

from qa.errors import IndexMismatch
from qa.evaluation.congruence import compare_backends
from qa.evaluation.retrieval import named_benchmark
from qa.index.build import build_index
from qa.index.lexical import BM25Index
from qa.index.load import open_index
from qa.index.manifest import current_generation, read_manifest
from qa.index.milvus_lexical import MilvusLexical
from qa.index.vectors.store import VectorStore
from qa.ingest.tokenize import Tokenizer
from qa.retrieve.search import Searcher
from tests.conftest import CORPUS, SHARED_DATA

# Long-running: `pytest -m "not slow"` skips it during development; CI runs it.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_milvus_generation_has_no_lexical_files(tmp_path, corpus_dir, fake_embedder):
    store = VectorStore(backend="milvus", uri=str(tmp_path / "m.db"))
    index_dir = tmp_path / "index"
    build_index(corpus_dir, index_dir, fake_embedder, vector_store=store)
    first = read_manifest(current_generation(index_dir))
    gen = current_generation(index_dir)
    assert first["lexical"]["engine"] == "milvus-sparse"
    assert not list(gen.glob("bm25*")) and not list(gen.glob("*.faiss"))
    loaded = open_index(index_dir, fake_embedder, store)
    searcher = Searcher(loaded, fake_embedder)
    hits = searcher.search("一主引领", top_k=3, mode="lexical").hits
    assert hits and all("一主引领" in h.chunk.clean_text for h in hits)
    rows = loaded.store.rows_of(["wuhan-9th-plenary-digest-2020-06-28"])
    only = searcher.search("武汉", top_k=5, mode="lexical",
                           doc_ids=["wuhan-9th-plenary-digest-2020-06-28"]).hits
    assert only and {h.chunk.doc_id for h in only} == {"wuhan-9th-plenary-digest-2020-06-28"}
    assert rows
    loaded.close()

    # A build keeps the generation it replaces (requests may still use it) and removes the
    # ones before it, their Milvus collections with them.
    build_index(corpus_dir, index_dir, fake_embedder, vector_store=store, force=True)
    build_index(corpus_dir, index_dir, fake_embedder, vector_store=store, force=True)
    client = pymilvus.MilvusClient(str(tmp_path / "m.db"))
    left = set(client.list_collections())
    client.close()
    assert first["lexical"]["collection"] not in left
    assert read_manifest(current_generation(index_dir))["lexical"]["collection"] in left


def test_milvus_lexical_scores_exactly_as_local_bm25(tmp_path, corpus_dir, fake_embedder):
    """The sparse rows are our weights, so every query's top-k is the local one: the same
    rows in the same order, scores to float32 rounding, with and without a row filter;
    coverage and max_score (the query-aware weight) equal too."""
    build_index(corpus_dir, tmp_path / "local", fake_embedder)
    gen = current_generation(tmp_path / "local")
    bm25 = BM25Index.load(gen)
    lex = MilvusLexical.create(str(tmp_path / "m.db"), "lex", None, bm25)
    tok = Tokenizer(read_manifest(gen)["lexical"].get("user_words") or [])
    queries = ["一主引领", "武汉 产业 发展", "中部地区 崛起 重要 战略 支点", "長江經濟帶",
               "疫情 防控 常态化", "科技 创新 人才 高校", "光谷", "的", "没有这个词xyz", ""]
    allowed = list(range(0, bm25.size, 3))
    try:
        for q in queries:
            toks = tok(q)
            for rows in (None, allowed):
                want = bm25.top(toks, 10, rows)
                got = lex.top(toks, 10, rows)
                assert got[0].tolist() == want[0].tolist(), (q, rows is None)
                np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
            assert lex.coverage(toks) == pytest.approx(bm25.coverage(toks), abs=1e-9)
            assert lex.max_score(toks) == bm25.max_score(toks)
    finally:
        lex.drop()
        lex.close()


def test_a_generation_of_the_old_milvus_lexical_layout_asks_for_a_rebuild():
    old = {"engine": "milvus-bm25", "uri": "unused.db", "collection": "c", "k1": 1.2,
           "b": 0.75, "count": 1}
    with pytest.raises(IndexMismatch, match="rebuild it with `qa index`"):
        MilvusLexical.load(old)


@pytest.mark.parametrize("name", ["corpus", "xquad"])
def test_milvus_backend_ranks_like_the_local_one(tmp_path, fake_embedder, name):
    if name == "xquad" and not (SHARED_DATA / "xquad").exists():
        pytest.skip(f"XQuAD is not in {SHARED_DATA}")
    bench = named_benchmark(name, SHARED_DATA, CORPUS, ROOT / "tests" / "data", limit=150)
    milvus = VectorStore(backend="milvus", uri=str(tmp_path / "m.db"))
    result = compare_backends(bench, fake_embedder, VectorStore(), milvus,
                              modes=("dense", "auto", "lexical"))["modes"]
    assert result["dense"] and result["auto"] and result["lexical"]
    for mode, slices in result.items():
        for sl in slices.values():
            # The bar: the same top-5 for >= 99 % of questions, recall to 0.005.
            assert sl["same_top_k"] >= 0.99, (mode, sl["differences"][:2])
            assert sl["max_score_diff"] <= 1e-4, (mode, sl["max_score_diff"])
            for k in ("R@1", "R@5"):
                assert abs(sl["a"][k] - sl["b"][k]) <= 0.005, (mode, k, sl["a"], sl["b"])
