"""A whole generation in Milvus, so that a serving replica needs no index folder.

With ``QA_VECTOR_BACKEND=milvus`` a build still writes its generation folder (the builder's
own: incremental reuse and the reader cache come from it), then **publishes** it, each
collection named ``<prefix>_<kind>_<generation>``:

* the paragraph and sentence vectors and the lexical leg, written by the build as before
  (``vectors``, ``sentences``, ``text`` + ``text_..._terms``);
* the chunk store (``chunks``, ``docs``: ``qa.index.milvus_store``);
* the second encoder's paragraph and sentence vectors and its translation dictionary
  (``use_vectors``, ``use_sentences``, ``use_vocab``);
* a blob collection (``blobs``) with the documents' text, the arrays search reads whole
  (hubness of both encoders, question flags, sentence offsets; each with its SHA-256 in the
  manifest) and, written last, the manifest itself with a ``published`` entry naming all of
  the above and a fresh checksum.

The build then opens the published generation exactly as a replica would (every count and
checksum checked) and only then makes it ``CURRENT`` in the registry
(``qa.index.milvus_records.Registry``); a crash before that leaves the previous one live.

Which generation is live, and retiring the others: ``qa.index.milvus_registry``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.encoders.base import Embedder
from qa.errors import IndexNotReady, QAError
from qa.index.integrity import check_manifest, damaged, manifest_checksum
from qa.index.loaded import LoadedIndex, _check_shapes, check_fits
from qa.index.manifest import read_manifest
from qa.index.milvus_records import (
    BLOB_FIELDS,
    Blobs,
    Registry,
    array_text,
    connect,
    create,
    text_array,
)
from qa.index.milvus_registry import _uri
from qa.index.milvus_store import MilvusChunkStore, collections, publish_store
from qa.index.second import SecondIndex, check_second
from qa.index.vectors.milvus import MilvusIndex, MilvusRows, collection_name
from qa.ingest.tokenize import Tokenizer

if TYPE_CHECKING:  # a type only: the store's module must not import this one back
    from qa.index.vectors.store import VectorStore

log = logging.getLogger("qa.index")
# Arrays a search reads whole: one value per chunk (per chunk + 1 for the offsets).
ARRAYS = ("hub_en", "question_rows", "sentence_offsets", "use_hub")


def publish(folder: Path, gen: str, cfg: VectorStore, embedder: Embedder | None) -> None:
    """Copy what a replica reads from a written generation folder into Milvus and check it
    by opening it as a replica would. Not yet current: see :func:`switch`."""
    client = connect(_uri(cfg), cfg.token)
    try:
        names = collections(cfg.collection, gen)
        create(client, names["blobs"], BLOB_FIELDS)
        blobs = Blobs(client, names["blobs"])
        publish_store(client, folder / "chunks.sqlite", names, blobs)
        manifest = read_manifest(folder)
        arrays = {}
        for name in ARRAYS:
            if (folder / f"{name}.npy").exists():
                text, sha = array_text(np.load(folder / f"{name}.npy"))
                blobs.put([(f"array/{name}", text)])
                arrays[name] = sha
        second = None
        if manifest.get("second"):
            second = _publish_second(cfg, folder, gen, manifest, blobs, arrays)
        full = {k: v for k, v in manifest.items() if k != "checksum"}
        full["published"] = {"collections": names, "arrays": arrays, "second": second,
                             "published_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        full["checksum"] = manifest_checksum(full)
        blobs.put([("manifest", json.dumps(full, ensure_ascii=False))])
        client.flush(names["blobs"])
    finally:
        client.close()
    open_published(folder.parent, embedder, cfg, gen=gen).close()


def _publish_second(cfg: VectorStore, folder: Path, gen: str, manifest: dict[str, Any],
                    blobs: Blobs, arrays: dict[str, str]) -> dict[str, Any]:
    """The second encoder's vectors, and its translation dictionary: the terms, their
    vectors, and each term's BM25 column and IDF (read from the lexical collections)."""
    out: dict[str, Any] = {
        "vectors": _vectors(cfg, folder / "use_vectors.npy", "use_vectors", gen)}
    if manifest["second"].get("sentences"):
        out["sentences"] = _vectors(cfg, folder / "use_sentences.npy", "use_sentences", gen)
    terms = json.loads((folder / "use_vocab.json").read_text(encoding="utf-8"))
    out["vocab"] = _vectors(cfg, folder / "use_vocab.npy", "use_vocab", gen)
    lexical = cfg.open_lexical(folder, manifest["lexical"])
    try:
        found = lexical.lookup_all(terms)
    finally:
        lexical.close()
    cols = np.asarray([found.get(t, (-1, 0.0))[0] for t in terms], dtype=np.int64)
    idf = np.asarray([found.get(t, (-1, 0.0))[1] for t in terms], dtype=np.float32)
    blobs.put([("use_vocab_terms", json.dumps(terms, ensure_ascii=False))])
    for name, arr in (("use_vocab_cols", cols), ("use_vocab_idf", idf)):
        text, arrays[name] = array_text(arr)
        blobs.put([(f"array/{name}", text)])
    return out


def _vectors(cfg: VectorStore, path: Path, kind: str, gen: str) -> dict[str, Any]:
    vecs = np.load(path, mmap_mode="r")
    index = MilvusIndex(vecs.shape[1], _uri(cfg), collection_name(f"{cfg.collection}_{kind}",
                                                                  gen),
                        cfg.token, cfg.index_type, cfg.index_params, cfg.search_params)
    try:
        for lo in range(0, len(vecs), 50_000):
            index.add(np.asarray(vecs[lo:lo + 50_000], dtype=np.float32))
        index.flush()
        return index.describe()
    finally:
        index.close()


def open_published(index_dir: Path, embedder: Embedder | None, cfg: VectorStore, *,
                   gen: str | None = None) -> LoadedIndex:
    """Open the generation the registry names current (or ``gen``) from Milvus alone.
    ``index_dir`` only names it (``LoadedIndex.path``); nothing is read from it."""
    client = connect(_uri(cfg), cfg.token)
    loaded: LoadedIndex | None = None
    try:
        gen = gen or Registry(client, cfg.collection).current()
        if gen is None:
            raise IndexNotReady(f"no index in Milvus at {cfg.uri} (collections "
                                f"{cfg.collection}_*): build it with `qa index` (or start "
                                "the service with `qa serve`, which builds it)")
        names = collections(cfg.collection, gen)
        if not client.has_collection(names["blobs"]):
            raise IndexNotReady(f"generation {gen} has no records in Milvus at {cfg.uri}: "
                                "rebuild it with `qa index`")
        where = index_dir / gen
        blobs = Blobs(client, names["blobs"])
        text = blobs.get("manifest")
        if text is None:
            raise damaged(where, "manifest (in Milvus)", "it is missing")
        manifest = json.loads(text)
        check_manifest(where, manifest)
        second = check_fits(where, manifest, embedder)
        published = manifest["published"]
        n = int(manifest["counts"]["chunks"])
        store = MilvusChunkStore(client, names, blobs, chunks=n,
                                 documents=int(manifest["counts"]["documents"]))
        loaded = LoadedIndex(where, manifest, cfg.open(where, "vectors", manifest["vectors"]),
                             cfg.open_lexical(where, manifest["lexical"]), store,
                             Tokenizer(manifest["lexical"].get("user_words") or []))
        arrays = _arrays(where, blobs, published["arrays"])
        if manifest.get("sentences"):
            loaded.sentences = cfg.open(where, "sentences", manifest["sentences"])
            offsets = arrays["sentence_offsets"]
            loaded.sentence_offsets = offsets
            loaded.sentence_owner = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64),
                                              np.diff(offsets))
        loaded.question_rows = arrays.get("question_rows")
        loaded.hub_en = arrays.get("hub_en") if manifest.get("hubness") else None
        _check_shapes(where, manifest, loaded, n)
        if store.stored_count() != n:
            raise damaged(where, names["chunks"], f"not {n} chunks")
        if second is not None:
            loaded.second = _second(cfg, manifest, published, arrays, blobs)
            check_second(where, loaded.second, n, loaded.sentence_offsets)
        return loaded
    except BaseException as exc:
        if loaded is not None:
            loaded.close()
        else:
            client.close()
        if isinstance(exc, QAError) or not isinstance(exc, Exception):
            raise
        log.warning("cannot open generation %s from Milvus: %s: %s", gen,
                    type(exc).__name__, exc)
        raise IndexNotReady(f"cannot read index generation {gen} from Milvus at {cfg.uri}; "
                            "the server log has the details") from None


def _arrays(where: Path, blobs: Blobs, recorded: dict[str, str]) -> dict[str, np.ndarray]:
    texts = blobs.get_many([f"array/{name}" for name in recorded])
    out = {}
    for name, sha in recorded.items():
        arr = text_array(texts.get(f"array/{name}", ""), sha)
        if arr is None:
            raise damaged(where, f"{name} (in Milvus)", "its checksum does not match the "
                          "manifest")
        out[name] = arr
    return out


def _second(cfg: VectorStore, manifest: dict[str, Any], published: dict[str, Any],
            arrays: dict[str, np.ndarray], blobs: Blobs) -> SecondIndex:
    """The second encoder's vectors in Milvus, read by row, and its dictionary."""
    pub = published["second"]

    def load(meta: dict[str, Any]) -> MilvusIndex:
        return MilvusIndex.load(None, meta, token=cfg.token, uri=cfg.uri)

    vectors, vocab = load(pub["vectors"]), load(pub["vocab"])
    sentences = load(pub["sentences"]) if pub.get("sentences") else None
    terms = json.loads(blobs.get("use_vocab_terms") or "[]")
    return SecondIndex(manifest["second"], vectors, MilvusRows(vectors),  # type: ignore[arg-type]
                       MilvusRows(sentences) if sentences else None,  # type: ignore[arg-type]
                       arrays.get("use_hub"), vocab, terms, arrays["use_vocab_cols"],
                       arrays["use_vocab_idf"])
