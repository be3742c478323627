"""A build's memory does not grow with the corpus's vectors: they go to the generation's
files a window at a time (qa.index.rows), and the vector indexes and hubness are written from
those files a block at a time. Measured with tracemalloc, which counts every Python object and
numpy array (not FAISS's or SQLite's own allocations), so the figures do not depend on the
machine's load or allocator; and the files the build writes that way are what numpy and
FAISS would have written."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import qa.index.embedding as embedding
import qa.index.hubness as hubness
import qa.index.integrity as integrity
import qa.index.rows as rows_module
from qa.encoders.base import HashingEmbedder
from qa.index.build import build_index
from qa.index.manifest import current_generation
from qa.index.rows import Rows, RowWriter

# Words with no quotation marks around them: no mined lexicon, so the build's jieba
# dictionary is the one the embedder already loaded (a constant a few MB either way).
WORDS = ["武汉", "城市圈", "科技", "创新", "产业", "发展", "建设", "长江", "光谷", "交通",
         "民生", "开放", "绿色", "人才", "企业", "改革", "服务", "规划", "生态", "文化"]


def _corpus(dest: Path, paragraphs: int, seed: int = 0) -> Path:
    """``paragraphs`` paragraphs of five or six sentences each, twenty to a document."""
    rng = random.Random(seed)
    dest.mkdir()
    paras = ["".join("".join(rng.choices(WORDS, k=rng.randint(4, 8))) + "。"
                     for _ in range(rng.randint(5, 6))) for _ in range(paragraphs)]
    for d in range(0, paragraphs, 20):
        (dest / f"d{d // 20:04d}.txt").write_text("\n\n".join(paras[d:d + 20]) + "\n",
                                                  encoding="utf-8")
    return dest


def _build_peak(corpus: Path, index: Path, embedder: HashingEmbedder) -> tuple[int, int]:
    """(peak traced bytes above the start of the build, bytes of vectors it wrote)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        build_index(corpus, index, embedder)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    gen = current_generation(index)
    assert gen is not None
    vectors = sum((gen / f).stat().st_size for f in ("vectors.npy", "sentences.npy"))
    return peak, vectors


def test_build_memory_does_not_grow_with_the_vectors(tmp_path, monkeypatch):
    # Small windows and blocks, so that both corpora span many of them; 1024-d vectors, so
    # that the vectors are most of what a corpus adds (24 KB a paragraph, against about
    # 1 KB of text, tokens and BM25 postings).
    monkeypatch.setattr(embedding, "WINDOW", 16)
    monkeypatch.setattr(hubness, "BLOCK", 16)
    monkeypatch.setattr(rows_module, "BLOCK", 64)
    monkeypatch.setattr(integrity, "_CHUNK", 64 * 1024)  # checksums read 4 MiB at a time
    emb = HashingEmbedder(dim=1024)
    # A first build pays what any first build in a process pays (imports, caches).
    _build_peak(_corpus(tmp_path / "warm", 20, seed=2), tmp_path / "i0", emb)
    small_peak, small_vecs = _build_peak(_corpus(tmp_path / "small", 100), tmp_path / "i1", emb)
    big_peak, big_vecs = _build_peak(_corpus(tmp_path / "big", 400, seed=1), tmp_path / "i4",
                                     emb)
    assert big_vecs > 3.5 * small_vecs > 0
    # Holding the vectors (as lists of arrays, then one concatenated array and a FAISS
    # copy) made the peak grow by more than the vectors did; streamed, by a small share.
    growth = big_peak - small_peak
    assert growth < 0.2 * (big_vecs - small_vecs), (small_peak, big_peak, small_vecs, big_vecs)


def test_row_files_are_what_numpy_writes(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((1000, 7)).astype(np.float32)
    writer = RowWriter(tmp_path / "rows.npy", 7)
    for lo in range(0, 1000, 300):
        writer.append(data[lo:lo + 300])
    rows = writer.close()
    np.save(tmp_path / "ref.npy", data)
    assert (tmp_path / "rows.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert len(rows) == 1000 and rows.shape == (1000, 7)
    np.testing.assert_array_equal(rows[5:17], data[5:17])
    np.testing.assert_array_equal(rows[[900, 3, 4]], data[[900, 3, 4]])
    np.testing.assert_array_equal(np.concatenate(list(rows.blocks(33))), data)
    empty = RowWriter(tmp_path / "empty.npy", 7).close()
    assert len(empty) == 0 and np.load(tmp_path / "empty.npy").shape == (0, 7)
    np.save(tmp_path / "doubles.npy", data.astype(np.float64))
    with pytest.raises(ValueError):
        Rows(tmp_path / "doubles.npy")


def test_a_streamed_flat_index_is_what_faiss_writes(tmp_path):
    import faiss

    from qa.index.vectors.faiss import FaissIndex, write_flat

    rng = np.random.default_rng(1)
    for n in (0, 1, 257):
        data = rng.standard_normal((n, 12)).astype(np.float32)
        ref = faiss.IndexFlatIP(12)
        if n:
            ref.add(data)
        faiss.write_index(ref, str(tmp_path / "ref.faiss"))
        assert write_flat(tmp_path / "mine.faiss", 12, n, [data[:100], data[100:]])
        assert (tmp_path / "mine.faiss").read_bytes() == (tmp_path / "ref.faiss").read_bytes()
        back = FaissIndex.load(tmp_path / "mine.faiss", {"dim": 12, "kind": "flat"})
        assert back.count() == n
    with pytest.raises(ValueError):
        write_flat(tmp_path / "short.faiss", 12, 5, [np.zeros((4, 12), np.float32)])
