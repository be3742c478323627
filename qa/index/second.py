"""The second encoder's part of an index generation (docs/EVAL.md, "Two encoders").

Files beside the first encoder's, in the same generation::

    use_vectors.npy  use_vectors.faiss   one vector per chunk (same rows as vectors.npy)
    use_sentences.npy                    one per sentence, laid out by sentence_offsets.npy
    use_hub.npy                          each chunk's closeness to generic English questions
    use_vocab.npy  use_vocab.json        the corpus vocabulary's Chinese terms, embedded: the
                                         dictionary that English question words are
                                         translated through (qa.retrieve.translate)

The manifest's ``second`` entry names the encoder and its fingerprint; loading refuses a
generation whose second encoder differs from the service's, and the incremental build
treats a change of the set of encoders like a change of model (everything is embedded
again). The vectors always live in FAISS files, whatever the first encoder's vector store:
they are read by row, and searched only as candidates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Embedder, embed
from qa.index.hubness import HUB_K, REFERENCE_BANK, hub_scores, reference_queries
from qa.index.rows import Rows, RowWriter
from qa.index.vectors.base import VectorIndex
from qa.index.vectors.store import VectorStore

_CJK = re.compile(r"[\u4e00-\u9fff]")
# The translation dictionary: Chinese terms of two characters or more (single characters
# translate to everything), the most frequent first, at most this many (200k terms of 512
# floats are 400 MB). A question looks up each of its English words (10-20), so above
# VOCAB_HNSW terms the lookup is an HNSW search rather than a scan (a scan of 20k terms
# costs ~20 ms a question on one core).
MAX_VOCAB = 200_000
VOCAB_HNSW = 10_000
# Terms embedded (or copied) and written at a time: the vocabulary's vectors are never all
# in memory at once.
VOCAB_BLOCK = 8192


def second_of(embedder: Embedder) -> Embedder | None:
    """The second encoder that ``embedder`` carries (qa.encoders.ensemble), if any."""
    return getattr(embedder, "second", None)


def describe(second: Embedder | None) -> dict[str, Any] | None:
    if second is None:
        return None
    return {"id": second.model_id, "fingerprint": second.fingerprint, "dim": second.dim}


def same_encoders(prev: dict[str, Any] | None, second: Embedder | None) -> bool:
    """Whether a previous generation's second encoder is this one (both absent counts)."""
    old = (prev or {}).get("second")
    if second is None or old is None:
        return second is None and old is None
    return bool(old.get("fingerprint") == second.fingerprint)


def vocabulary_terms(vocab: dict[str, int], idf: np.ndarray) -> list[str]:
    """The BM25 terms worth translating into: Chinese, two characters or more, the most
    frequent (lowest idf) first, at most :data:`MAX_VOCAB`."""
    terms = [t for t in vocab if len(t) >= 2 and _CJK.search(t)]
    terms.sort(key=lambda t: (float(idf[vocab[t]]), t))
    return terms[:MAX_VOCAB]


def write_second(tmp: Path, second: Embedder, vectors: Rows, sents: Rows | None,
                 offsets: np.ndarray | None, embedded: int, old: dict[str, Any] | None,
                 vocab: list[str], batch_size: int, gen_name: str,
                 hnsw_threshold: int) -> dict[str, Any]:
    """Write the second encoder's indexes of one generation and return the manifest entry.

    ``vectors`` (``use_vectors.npy``, one row per chunk) and ``sents``
    (``use_sentences.npy``, laid out by ``offsets``) were written as the build streamed
    (qa.index.embedding), reused rows copied from ``old`` (:func:`open_previous_second`),
    whose vocabulary vectors are reused here too; ``embedded`` is how many texts the second
    encoder embedded."""
    n = len(vectors)
    vectors_meta = VectorStore().write(second.dim, vectors, tmp, "use_vectors", gen_name,
                                       hnsw_threshold)
    entry: dict[str, Any] = {**(describe(second) or {}), "vectors": vectors_meta,
                             "embedded": embedded, "sentences": offsets is not None}
    bank = reference_queries()
    if bank and n:
        np.save(tmp / "use_hub.npy", hub_scores(second.embed_batch(bank, "query"), vectors,
                                                (sents, offsets) if offsets is not None
                                                and sents is not None else None))
        entry["hubness"] = {"bank": REFERENCE_BANK.name, "bank_size": len(bank), "k": HUB_K}
    vocab_vecs = _vocab_vectors(second, vocab, old, batch_size, tmp / "use_vocab.npy")
    (tmp / "use_vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    entry["vocab"] = {**VectorStore().write(second.dim, vocab_vecs, tmp, "use_vocab", gen_name,
                                            VOCAB_HNSW), "count": len(vocab)}
    return entry


def open_previous_second(prev_gen: Path | None, sentences: bool) -> dict[str, Any] | None:
    """The previous generation's second-encoder arrays (vectors and sentences as
    :class:`Rows`, the vocabulary's memory-mapped), or None when it has none a build could
    copy from."""
    return _previous(prev_gen, sentences)


def _previous(prev_gen: Path | None, sentences: bool) -> dict[str, Any] | None:
    if prev_gen is None or not (prev_gen / "use_vectors.npy").exists():
        return None
    out: dict[str, Any] = {"vectors": Rows(prev_gen / "use_vectors.npy")}
    if sentences:
        if not (prev_gen / "use_sentences.npy").exists():
            return None
        out["sentences"] = Rows(prev_gen / "use_sentences.npy")
        out["offsets"] = np.load(prev_gen / "sentence_offsets.npy")
    try:
        out["vocab"] = json.loads((prev_gen / "use_vocab.json").read_text(encoding="utf-8"))
        out["vocab_vectors"] = np.load(prev_gen / "use_vocab.npy", mmap_mode="r")
    except (OSError, ValueError):
        out["vocab"] = []
    return out


def _vocab_vectors(second: Embedder, vocab: list[str], old: dict[str, Any] | None,
                   batch_size: int, path: Path) -> Rows:
    """The terms' vectors, written to ``path`` a block of terms at a time; terms already in
    the previous generation keep theirs."""
    known = {t: i for i, t in enumerate(old["vocab"])} if old else {}
    out = RowWriter(path, second.dim)
    try:
        for lo in range(0, len(vocab), VOCAB_BLOCK):
            terms = vocab[lo:lo + VOCAB_BLOCK]
            block = np.zeros((len(terms), second.dim), np.float32)
            reuse = [(i, known[t]) for i, t in enumerate(terms) if t in known]
            if reuse:
                block[[i for i, _ in reuse]] = old["vocab_vectors"][[j for _, j in reuse]]  # type: ignore[index]
            todo = [i for i, t in enumerate(terms) if t not in known]
            if todo:
                block[todo] = embed(second, [terms[i] for i in todo], "passage",
                                    batch_size=max(batch_size, 256))
            out.append(block)
    except BaseException:
        out.abort()
        raise
    return out.close()


@dataclass
class SecondIndex:
    """The second encoder's arrays of one generation, opened read-only."""

    manifest: dict[str, Any]
    vectors: VectorIndex
    matrix: np.ndarray
    sentence_matrix: np.ndarray | None
    hub_en: np.ndarray | None
    vocab: VectorIndex
    vocab_terms: list[str]
    # Published in Milvus: each dictionary term's BM25 column and IDF, which the local
    # generation reads off its BM25 vocabulary instead (qa.retrieve.second).
    vocab_cols: np.ndarray | None = None
    vocab_idf: np.ndarray | None = None


def open_second(gen: Path, manifest: dict[str, Any]) -> SecondIndex:
    meta = manifest["second"]
    sentences = np.asarray(np.load(gen / "use_sentences.npy", mmap_mode="r")) \
        if meta.get("sentences") else None
    hub = np.load(gen / "use_hub.npy") if (gen / "use_hub.npy").exists() else None
    return SecondIndex(meta, VectorStore().open(gen, "use_vectors", meta["vectors"]),
                       np.asarray(np.load(gen / "use_vectors.npy", mmap_mode="r")), sentences, hub,
                       VectorStore().open(gen, "use_vocab", meta["vocab"]),
                       json.loads((gen / "use_vocab.json").read_text(encoding="utf-8")))


def check_second(gen: Path, second: SecondIndex, n: int, offsets: np.ndarray | None) -> None:
    """The second encoder's files must agree with the generation's chunk count and sentence
    offsets, whatever their checksums say (as qa.index.load checks the first encoder's)."""
    from qa.index.integrity import damaged

    if second.matrix.shape[0] != n or second.vectors.count() != n:
        raise damaged(gen, "use_vectors.npy", f"{second.matrix.shape[0]} vectors for {n} chunks")
    if second.sentence_matrix is not None and (
            offsets is None or len(second.sentence_matrix) != int(offsets[-1])):
        raise damaged(gen, "use_sentences.npy", "it does not match the sentence offsets")
    if second.hub_en is not None and second.hub_en.shape != (n,):
        raise damaged(gen, "use_hub.npy", f"shape {second.hub_en.shape} for {n} chunks")
    if second.vocab.count() != len(second.vocab_terms) or (
            second.vocab_cols is not None and len(second.vocab_cols) != len(second.vocab_terms)):
        raise damaged(gen, "use_vocab.faiss", "it does not match use_vocab.json")
