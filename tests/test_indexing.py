from __future__ import annotations

import json

import numpy as np
import pytest

import qa.index.build as indexing
from qa.encoders.base import HashingEmbedder
from qa.errors import IndexMismatch, IndexNotReady
from qa.index.build import build_index
from qa.index.load import open_index
from qa.index.manifest import current_generation
from qa.retrieve.search import Searcher

DIGEST = "wuhan-9th-plenary-digest-2020-06-28"
TRANSCRIPT = "wuhan-11th-plenary-press-conference-2021-07-26"


def _doc_ids_for(searcher: Searcher, query: str) -> set[str]:
    return {h.chunk.doc_id for h in searcher.search(query, top_k=20).hits}


def test_build_writes_a_self_describing_manifest(tmp_path, corpus_dir, fake_embedder):
    report = build_index(corpus_dir, tmp_path / "index", fake_embedder)
    gen = current_generation(tmp_path / "index")
    manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["fingerprint"] == fake_embedder.fingerprint
    assert manifest["model"]["dim"] == fake_embedder.dim
    assert manifest["chunker"]["version"]
    assert set(manifest["documents"]) == {DIGEST, TRANSCRIPT}
    assert all(len(d["sha256"]) == 64 for d in manifest["documents"].values())
    assert manifest["counts"]["chunks"] == report.chunks == np.load(gen / "vectors.npy").shape[0]
    assert "一主引领" in manifest["lexical"]["user_words"]


def test_rebuild_is_incremental(tmp_path, corpus_dir, fake_embedder):
    index_dir = tmp_path / "index"
    first = build_index(corpus_dir, index_dir, fake_embedder)
    assert sorted(first.added) == sorted([DIGEST, TRANSCRIPT])
    again = build_index(corpus_dir, index_dir, fake_embedder)
    assert again.embedded == 0 and sorted(again.unchanged) == sorted([DIGEST, TRANSCRIPT])

    path = corpus_dir / f"{DIGEST}.md"
    path.write_text(path.read_text(encoding="utf-8") + "\n\n新增一段关于长江新区的内容。\n",
                    encoding="utf-8")
    changed = build_index(corpus_dir, index_dir, fake_embedder)
    assert changed.changed == [DIGEST] and changed.unchanged == [TRANSCRIPT]
    n_digest = json.loads((current_generation(index_dir) / "manifest.json").read_text(
        encoding="utf-8"))["documents"][DIGEST]["chunks"]
    assert changed.embedded == n_digest

    # Reused vectors are the same rows as freshly computed ones.
    fresh_dir = tmp_path / "fresh"
    build_index(corpus_dir, fresh_dir, fake_embedder)
    a = open_index(index_dir, fake_embedder)
    b = open_index(fresh_dir, fake_embedder)
    assert np.allclose(np.load(a.path / "vectors.npy"), np.load(b.path / "vectors.npy"))
    assert np.array_equal(a.sentence_offsets, b.sentence_offsets)
    assert np.allclose(np.load(a.path / "sentences.npy"), np.load(b.path / "sentences.npy"))
    q = np.ones(a.vectors.dim, np.float32) / np.sqrt(a.vectors.dim)
    assert np.allclose(a.vectors.score(q), b.vectors.score(q), atol=1e-6)


def test_removed_and_added_documents(tmp_path, corpus_dir, fake_embedder):
    index_dir = tmp_path / "index"
    build_index(corpus_dir, index_dir, fake_embedder)
    assert DIGEST in _doc_ids_for(Searcher(open_index(index_dir, fake_embedder), fake_embedder),
                                  "院士 高校")
    (corpus_dir / f"{DIGEST}.md").unlink()
    (corpus_dir / "new-note.txt").write_text("武汉新建了一座量子计算实验室。\n", encoding="utf-8")
    report = build_index(corpus_dir, index_dir, fake_embedder)
    assert report.removed == [DIGEST] and report.added == ["new-note"]
    searcher = Searcher(open_index(index_dir, fake_embedder), fake_embedder)
    for q in ("院士 高校", "产业地图", "五张网"):
        assert DIGEST not in _doc_ids_for(searcher, q)
    assert searcher.search("量子计算实验室", top_k=1).hits[0].chunk.doc_id == "new-note"
    # The replaced generation stays until the next build (a server may still be loading it);
    # older ones are removed then (tests/faults/test_generations.py).
    assert len(list(index_dir.glob("g-*"))) == 2


def test_a_crash_mid_build_leaves_the_previous_index_usable(tmp_path, corpus_dir,
                                                            fake_embedder, monkeypatch):
    index_dir = tmp_path / "index"
    build_index(corpus_dir, index_dir, fake_embedder)
    before = current_generation(index_dir)
    (corpus_dir / "extra.txt").write_text("额外的文档内容。\n", encoding="utf-8")

    def explode(tmp, *args, **kwargs):
        (tmp / "vectors.npy").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(indexing, "_write_generation", explode)
    with pytest.raises(KeyboardInterrupt):
        build_index(corpus_dir, index_dir, fake_embedder)
    assert current_generation(index_dir) == before
    assert not list(index_dir.glob(".building-*"))
    searcher = Searcher(open_index(index_dir, fake_embedder), fake_embedder)
    assert searcher.search("光芯屏端网").hits
    monkeypatch.undo()
    assert "extra" in build_index(corpus_dir, index_dir, fake_embedder).added


def test_a_bad_file_is_skipped_and_named_and_the_others_are_indexed(tmp_path, corpus_dir,
                                                                    fake_embedder):
    index_dir = tmp_path / "index"
    (corpus_dir / "broken.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4)
    (corpus_dir / "gbk.txt").write_bytes("武汉市推进城市更新。".encode("gbk"))
    report = build_index(corpus_dir, index_dir, fake_embedder)
    assert set(report.failed) == {"broken.pdf"}
    assert "broken.pdf: not a readable PDF" in report.failed["broken.pdf"]
    assert "skipped broken.pdf: not a readable PDF" in report.summary()
    assert "gbk" in report.added and len(report.added) == 3  # GB text is read, not refused
    searcher = Searcher(open_index(index_dir, fake_embedder), fake_embedder)
    assert "broken" not in searcher.index.store.documents


def test_index_refuses_vectors_of_other_weights(tmp_path, corpus_dir, fake_embedder):
    index_dir = tmp_path / "index"
    build_index(corpus_dir, index_dir, fake_embedder)
    with pytest.raises(IndexMismatch, match="rebuild it"):
        open_index(index_dir, HashingEmbedder(dim=128))
    # A rebuild with the other embedder re-embeds everything rather than mixing vectors.
    report = build_index(corpus_dir, index_dir, HashingEmbedder(dim=128))
    assert report.embedded == report.chunks


def test_no_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexNotReady, match="qa index"):
        open_index(tmp_path / "nothing")
