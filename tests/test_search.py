from __future__ import annotations

import numpy as np

from qa.indexing import build_index, open_index
from qa.search import Searcher


def test_dense_score_is_the_blend_of_paragraph_and_best_sentence(tmp_path, corpus_dir,
                                                                  fake_embedder):
    """The dense leg against brute force: (1-w)*paragraph cosine + w*max sentence cosine."""
    build_index(corpus_dir, tmp_path / "index", fake_embedder)
    searcher = Searcher(open_index(tmp_path / "index", fake_embedder), fake_embedder)
    idx = searcher.index
    w = searcher.params.sentence_weight
    q = fake_embedder.embed_batch(["武汉城市圈同城化发展的举措"], "query")[0]
    rows = list(range(0, idx.vectors.count(), 3))
    got = searcher._dense_exact(q, rows)
    for r in rows:
        a, b = idx.sentence_offsets[r], idx.sentence_offsets[r + 1]
        best = float((np.asarray(idx.sentence_matrix[a:b]) @ q).max())
        expected = (1 - w) * float(np.asarray(idx.matrix[r]) @ q) + w * best
        assert abs(got[r] - expected) < 1e-5


def test_search_respects_the_document_filter_in_every_mode(tmp_path, corpus_dir, fake_embedder):
    build_index(corpus_dir, tmp_path / "index", fake_embedder)
    searcher = Searcher(open_index(tmp_path / "index", fake_embedder), fake_embedder)
    doc = "wuhan-9th-plenary-digest-2020-06-28"
    for mode in ("auto", "hybrid", "dense", "lexical"):
        hits = searcher.search("武汉 发展", top_k=20, mode=mode, doc_ids=[doc]).hits
        assert hits and {h.chunk.doc_id for h in hits} == {doc}
