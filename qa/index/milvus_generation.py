"""A whole generation in Milvus, so that a serving replica needs no index folder.

With ``QA_VECTOR_BACKEND=milvus`` a build still writes its generation folder (the builder's
own: incremental reuse and the reader cache come from it), then **publishes** it, each
collection named ``<prefix>_<kind>_<generation>``:

* the paragraph and sentence vectors and the lexical leg, written by the build as before
  (``vectors``, ``sentences``, ``text`` + ``text_..._terms``);
* the chunk store (``chunks``, ``docs``: ``qa.index.milvus_store``);
* the second encoder's paragraph and sentence vectors (``use_vectors``, ``use_sentences``);
* a blob collection (``blobs``) with the documents' text, the arrays search reads whole
  (hubness of both encoders, question flags, sentence offsets; each with its SHA-256 in the
  manifest) and, written last, the manifest itself with a ``published`` entry naming all of
  the above and a fresh checksum.

The build then opens the published generation exactly as a replica would (every count and
checksum checked) and only then makes it ``CURRENT`` in the registry
(``qa.index.milvus_records.Registry``); a crash before that leaves the previous one live.

**Retiring** needs no file lock: the registry records when each generation was replaced, and
a build drops the collections of every generation that is neither current nor the one just
replaced, once replaced for ``retire_after_s`` seconds (``QA_MILVUS_RETIRE_AFTER_S``, 0 by
default: the previous generation is always kept for replicas that have not switched yet,
and any older one goes). A generation whose build failed before it became current is
dropped the same way, by the time it was registered.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.encoders.base import Embedder
from qa.errors import IndexNotReady, QAError
from qa.index.integrity import check_manifest, damaged, manifest_checksum
from qa.index.loaded import LoadedIndex, _check_shapes, check_fits
from qa.index.manifest import FORMAT, read_manifest
from qa.index.milvus_records import (
    BLOB_FIELDS,
    Blobs,
    Registry,
    array_text,
    connect,
    create,
    text_array,
)
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


def _uri(cfg: VectorStore) -> str:
    if not cfg.uri:
        raise ValueError("vector_backend=milvus needs QA_MILVUS_URI (a file path for "
                         "milvus-lite, or http://host:19530 for a server)")
    return cfg.uri


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


# -- the registry: which generation is live, and retiring the others ----------------------
def register(cfg: VectorStore, gen: str) -> None:
    client = connect(_uri(cfg), cfg.token)
    try:
        Registry(client, cfg.collection).register(gen)
    finally:
        client.close()


def switch(cfg: VectorStore, gen: str) -> str | None:
    """Make a published generation current; replicas move to it on their next check."""
    client = connect(_uri(cfg), cfg.token)
    try:
        return Registry(client, cfg.collection).switch(gen)
    finally:
        client.close()


def current(cfg: VectorStore) -> str | None:
    client = connect(_uri(cfg), cfg.token)
    try:
        return Registry(client, cfg.collection).current()
    finally:
        client.close()


def current_manifest(cfg: VectorStore) -> dict[str, Any] | None:
    """The live generation's published manifest (None without one)."""
    client = connect(_uri(cfg), cfg.token)
    try:
        gen = Registry(client, cfg.collection).current()
        names = collections(cfg.collection, gen) if gen else None
        if names is None or not client.has_collection(names["blobs"]):
            return None
        text = Blobs(client, names["blobs"]).get("manifest")
        return json.loads(text) if text else None
    finally:
        client.close()


def needs_build(cfg: VectorStore) -> bool:
    """No live generation in Milvus, or one this qa cannot load."""
    try:
        manifest = current_manifest(cfg)
    except QAError:
        raise
    except Exception:  # noqa: BLE001 - unreadable: `qa index` publishes a new one
        return True
    return manifest is None or manifest.get("format") != FORMAT


def _drop(client: Any, prefix: str, gen: str) -> list[str]:
    token = re.sub(r"[^0-9A-Za-z_]", "_", gen)
    dropped = []
    for name in client.list_collections():
        if name.startswith(f"{prefix}_") and (name.endswith(f"_{token}")
                                             or name.endswith(f"_{token}_terms")):
            client.drop_collection(name)
            dropped.append(name)
    return dropped


def discard(cfg: VectorStore, gen: str) -> None:
    """Best effort, after a failed build: drop what it wrote and forget it."""
    try:
        client = connect(_uri(cfg), cfg.token)
        try:
            _drop(client, cfg.collection, gen)
            Registry(client, cfg.collection).forget(gen)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - the next build's retire() tries again
        log.warning("could not drop the collections of %s: %s", gen, exc)


def retire(cfg: VectorStore, now: float | None = None) -> list[str]:
    """Drop the generations that are neither current nor the one it replaced, once replaced
    (or, never current, registered) ``cfg.retire_after_s`` ago; returns their names."""
    now = time.time() if now is None else now
    client = connect(_uri(cfg), cfg.token)
    try:
        registry = Registry(client, cfg.collection)
        live = registry.current()
        entries = registry.entries()
        if live is None:
            return []
        replaced = {g: e["retired_at"] for g, e in entries.items() if e.get("retired_at")}
        previous = max(replaced, key=lambda g: replaced[g]) if replaced else None
        live_at = entries.get(live, {}).get("registered_at", now)
        gone = []
        for gen, entry in sorted(entries.items()):
            if gen in (live, previous):
                continue
            since = entry.get("retired_at") or entry.get("registered_at", 0.0)
            if entry.get("retired_at") is None and since > live_at:
                continue  # registered after the live one: a build still running
            if now - since < cfg.retire_after_s:
                continue
            _drop(client, cfg.collection, gen)
            registry.forget(gen)
            gone.append(gen)
        return gone
    finally:
        client.close()


def is_registered(cfg: VectorStore, gen: str) -> bool:
    client = connect(_uri(cfg), cfg.token)
    try:
        return gen in Registry(client, cfg.collection).entries()
    finally:
        client.close()


class PointerReader:
    """Reads the registry's ``CURRENT`` over one client, for a service's reload checks."""

    def __init__(self, cfg: VectorStore) -> None:
        self._cfg = cfg
        self._client: Any = None

    def __call__(self) -> str | None:
        if self._client is None:
            self._client = connect(_uri(self._cfg), self._cfg.token)
        try:
            return Registry(self._client, self._cfg.collection).current()
        except Exception:
            self.close()  # reconnect on the next call
            raise

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
