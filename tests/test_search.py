from __future__ import annotations

import numpy as np

from qa.index.build import build_index
from qa.index.load import open_index
from qa.retrieve.search import Searcher


def test_dense_score_is_the_blend_of_paragraph_and_best_sentence(tmp_path, corpus_dir,
                                                                  fake_embedder):
    """The dense leg against brute force: (1-w)*paragraph cosine + w*max sentence cosine."""
    build_index(corpus_dir, tmp_path / "index", fake_embedder)
    searcher = Searcher(open_index(tmp_path / "index", fake_embedder), fake_embedder)
    idx = searcher.index
    w = searcher.params.sentence_weight
    q = fake_embedder.embed_batch(["武汉城市圈同城化发展的举措"], "query")[0]
    # Brute force from the generation's own vector files, not through the index interface.
    matrix = np.load(idx.path / "vectors.npy")
    sentence_matrix = np.load(idx.path / "sentences.npy")
    rows = list(range(0, idx.vectors.count(), 3))
    got = searcher._dense_exact(q, rows)
    for r in rows:
        a, b = idx.sentence_offsets[r], idx.sentence_offsets[r + 1]
        best = float((sentence_matrix[a:b] @ q).max())
        expected = (1 - w) * float(matrix[r] @ q) + w * best
        assert abs(got[r] - expected) < 1e-5


def test_search_respects_the_document_filter_in_every_mode(tmp_path, corpus_dir, fake_embedder):
    build_index(corpus_dir, tmp_path / "index", fake_embedder)
    searcher = Searcher(open_index(tmp_path / "index", fake_embedder), fake_embedder)
    doc = "wuhan-9th-plenary-digest-2020-06-28"
    for mode in ("auto", "hybrid", "dense", "lexical"):
        hits = searcher.search("武汉 发展", top_k=20, mode=mode, doc_ids=[doc]).hits
        assert hits and {h.chunk.doc_id for h in hits} == {doc}


QUESTIONS = ["武汉城市圈同城化发展的举措", "光芯屏端网", "How will Wuhan develop its digital economy?",
             "疫情防控常态化", "长江经济带 生态保护", "2025年 GDP 目标"]


def _both_paths(tmp_path, corpus_dir, fake_embedder):
    build_index(corpus_dir, tmp_path / "index", fake_embedder)
    scan = Searcher(open_index(tmp_path / "index", fake_embedder), fake_embedder)
    candidates = Searcher(open_index(tmp_path / "index", fake_embedder), fake_embedder)
    candidates._scan = False
    assert scan._scan, "a flat index must take the whole-scan path"
    return scan, candidates


def test_whole_scan_scores_every_chunk_exactly(tmp_path, corpus_dir, fake_embedder):
    """The scan path's scores are the brute-force blend, and its best rows are the true best."""
    scan, _ = _both_paths(tmp_path, corpus_dir, fake_embedder)
    n = scan.index.vectors.count()
    for question in QUESTIONS:
        q = fake_embedder.embed_batch([question], "query")[0]
        exact = scan._dense_exact(q, list(range(n)))
        got = scan._dense_scan(q, 5, None)
        assert len(got) == min(10, n)
        for r, v in got.items():
            assert abs(v - exact[r]) < 1e-5
        assert min(got.values()) >= sorted(exact.values(), reverse=True)[len(got) - 1] - 1e-6


def test_whole_scan_and_candidate_paths_rank_alike(tmp_path, corpus_dir, fake_embedder):
    scan, candidates = _both_paths(tmp_path, corpus_dir, fake_embedder)
    doc = "wuhan-9th-plenary-digest-2020-06-28"
    for question in QUESTIONS:
        for mode in ("auto", "dense", "hybrid"):
            for doc_ids in (None, [doc]):
                a = scan.search(question, top_k=10, mode=mode, doc_ids=doc_ids)
                b = candidates.search(question, top_k=10, mode=mode, doc_ids=doc_ids)
                assert [h.chunk.chunk_id for h in a.hits] == [h.chunk.chunk_id for h in b.hits]
                assert abs(a.confidence - b.confidence) < 1e-6
