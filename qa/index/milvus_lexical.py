"""The lexical leg in Milvus: *our* BM25 weights as sparse vectors, so a serving replica
holds no BM25 file and Milvus ranks exactly as the local ``BM25Index`` does.

Each passage is stored as its row of ``BM25Index.weights`` (term id -> the term's full BM25
weight in that passage: IDF, saturation and length normalisation already applied, k1 1.2,
b 0.75) in a ``SPARSE_FLOAT_VECTOR`` with a ``SPARSE_INVERTED_INDEX`` under metric ``IP``.
A query is the indicator vector of its distinct known terms, so its inner product with a
passage is the sum of those terms' weights: the local BM25 score, computed by Milvus.

Why not Milvus's own ``BM25`` function over an analysed text field (the first version):
Milvus re-tokenises the text and keeps its own document-length and document-frequency
statistics (per segment in milvus-lite), so the same terms scored 0.3-7 % differently and
near-ties swapped (same top-5 for 67-93 % of Chinese questions; docs/SCALING.md). The price
of exact scores: the statistics are fixed when the generation is built, so rows inserted
later would not update them; qa never does that (every change is a new generation).

Our tokens (the mined policy-term dictionary, Traditional->Simplified and full-width
folding, stop words) are what the vocabulary holds, so they carry over unchanged. A second,
small collection maps each term to its column and IDF: the query needs the columns, and
``coverage`` / ``max_score`` (the query-aware weight) the IDFs.
pymilvus itself is imported through ``qa.index.vectors.milvus``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import IndexMismatch, IndexNotReady
from qa.index.lexical import BM25Index
from qa.index.vectors.milvus import _pymilvus, is_local_uri, translated

ENGINE = "milvus-sparse"
_ID, _SPARSE = "id", "weights"
_TERM, _COL, _IDF, _PAD = "term", "col", "idf", "pad"
_BATCH = 2_000
_TERM_LEN = 512
_MAX_LIMIT = 16_384  # Milvus's cap on a search's limit


def _quote(term: str) -> str:
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


class MilvusLexical:
    """BM25 top-k in one Milvus collection, the vocabulary in another; same methods as
    ``BM25Index`` that search uses (``top``, ``coverage``, ``max_score``, ``size``)."""

    def __init__(self, uri: str, collection: str, token: str | None = None, *,
                 k1: float = 1.2, b: float = 0.75, size: int = 0) -> None:
        pm = _pymilvus()
        self.uri = str(Path(uri).resolve()) if is_local_uri(uri) else uri
        self.collection, self.terms = collection, f"{collection}_terms"
        self.k1, self.b, self.size = k1, b, size
        # search asks coverage(), max_score() and top() for the same tokens: one round trip.
        self._last: tuple[frozenset[str], dict[str, tuple[int, float]]] = (frozenset(), {})
        try:
            self._client = pm.MilvusClient(uri=self.uri, token=token or "")
        except Exception as exc:
            raise IndexNotReady(f"cannot open Milvus at {self.uri}: {exc}") from exc

    # -- build ----------------------------------------------------------------------------
    @classmethod
    def create(cls, uri: str, collection: str, token: str | None,
               bm25: BM25Index) -> MilvusLexical:
        """Fill a fresh pair of collections from a built ``BM25Index``: its weight rows and
        its vocabulary (column and IDF of every term)."""
        self = cls(uri, collection, token, k1=bm25.k1, b=bm25.b, size=bm25.size)
        pm, client = _pymilvus(), self._client
        for name in (self.collection, self.terms):
            if client.has_collection(name):
                client.drop_collection(name)
        schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID, pm.DataType.INT64, is_primary=True)
        schema.add_field(_SPARSE, pm.DataType.SPARSE_FLOAT_VECTOR)
        index = client.prepare_index_params()
        index.add_index(field_name=_SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        client.create_collection(self.collection, schema=schema, index_params=index,
                                 consistency_level="Strong")
        rows = bm25.weights.tocsr()
        for lo in range(0, self.size, _BATCH):
            batch = []
            for r in range(lo, min(lo + _BATCH, self.size)):
                a, z = rows.indptr[r], rows.indptr[r + 1]
                # A passage without a known term (all stop words) can never match: no row.
                if z > a:
                    batch.append({_ID: r, _SPARSE: dict(zip(rows.indices[a:z].tolist(),
                                                            rows.data[a:z].tolist(), strict=True))})
            if batch:
                client.insert(self.collection, batch)
        # Milvus requires a vector field in every collection: the terms carry a 2-d one.
        terms = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        terms.add_field(_TERM, pm.DataType.VARCHAR, max_length=_TERM_LEN, is_primary=True)
        terms.add_field(_COL, pm.DataType.INT64)
        terms.add_field(_IDF, pm.DataType.FLOAT)
        terms.add_field(_PAD, pm.DataType.FLOAT_VECTOR, dim=2)
        tindex = client.prepare_index_params()
        tindex.add_index(field_name=_PAD, index_type="FLAT", metric_type="IP")
        client.create_collection(self.terms, schema=terms, index_params=tindex,
                                 consistency_level="Strong")
        vocab = sorted(bm25.vocab.items(), key=lambda kv: kv[1])
        for lo in range(0, len(vocab), _BATCH):
            client.insert(self.terms, [
                {_TERM: t, _COL: i, _IDF: float(bm25.idf[i]), _PAD: [0.0, 0.0]}
                for t, i in vocab[lo:lo + _BATCH] if len(t) <= _TERM_LEN])
        client.flush(self.collection)
        client.flush(self.terms)
        return self

    def describe(self) -> dict[str, Any]:
        return {"engine": ENGINE, "uri": self.uri, "collection": self.collection,
                "terms": self.terms, "k1": self.k1, "b": self.b, "count": self.size,
                "scoring": "our BM25 weights as sparse vectors, metric IP"}

    @classmethod
    def load(cls, meta: dict[str, Any], token: str | None = None,
             uri: str | None = None) -> MilvusLexical:
        if meta.get("engine") != ENGINE:
            raise IndexMismatch(f"the lexical index is in an older Milvus layout "
                                f"({meta.get('engine')!r}): rebuild it with `qa index`")
        self = cls(uri or meta["uri"], meta["collection"], token, k1=meta["k1"], b=meta["b"],
                   size=meta["count"])
        for name in (self.collection, self.terms):
            if not self._client.has_collection(name):
                self._client.close()
                raise IndexNotReady(f"Milvus at {self.uri} has no collection {name!r}: "
                                    "rebuild the index with `qa index`")
            self._client.load_collection(name)
        return self

    # -- search ---------------------------------------------------------------------------
    @translated("lexical index")
    def _lookup(self, tokens: Sequence[str]) -> dict[str, tuple[int, float]]:
        """Column and IDF of each known term among ``tokens`` (cached for the last query)."""
        key = frozenset(t for t in tokens if len(t) <= _TERM_LEN)
        last = self._last
        if not key or last[0] == key:
            return last[1] if key else {}
        got = self._client.query(self.terms,
                                 filter=f"{_TERM} in [{','.join(map(_quote, sorted(key)))}]",
                                 output_fields=[_TERM, _COL, _IDF])
        found = {r[_TERM]: (int(r[_COL]), float(r[_IDF])) for r in got}
        self._last = (key, found)
        return found

    def columns(self, terms: Sequence[str]) -> dict[str, int]:
        """The BM25 column of each of ``terms`` the vocabulary has."""
        return {t: c for t, (c, _) in self._lookup(terms).items()}

    def lookup_all(self, terms: Sequence[str]) -> dict[str, tuple[int, float]]:
        """Column and IDF of every known term among ``terms``, in batches (a build's)."""
        out: dict[str, tuple[int, float]] = {}
        for lo in range(0, len(terms), _BATCH // 2):
            part = [t for t in terms[lo:lo + _BATCH // 2] if len(t) <= _TERM_LEN]
            if part:
                got = self._client.query(self.terms,
                                         filter=f"{_TERM} in [{','.join(map(_quote, part))}]",
                                         output_fields=[_TERM, _COL, _IDF])
                out.update({r[_TERM]: (int(r[_COL]), float(r[_IDF])) for r in got})
        return out

    def top(self, tokens: Sequence[str], k: int,
            allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ``k`` best passages, best first, ties by row, as
        ``BM25Index.top``; each distinct query term counts once, as there."""
        cols = sorted({c for c, _ in self._lookup(tokens).values()})
        return self.weighted_top({c: 1.0 for c in cols}, k, allowed)

    @translated("lexical index")
    def weighted_top(self, weights: dict[int, float], k: int,
                     allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ``k`` best passages for query terms weighted by column
        (the second encoder's translated English words), best first, ties by row: the
        inner product with each passage's BM25 weights, scores above 0 only."""
        none = np.zeros(0, np.int64), np.zeros(0, np.float32)
        if k <= 0 or not self.size or not weights:
            return none
        expr = ""
        if allowed is not None:
            rows = sorted({int(r) for r in allowed})
            if not rows:
                return none
            expr = f"{_ID} in [{','.join(map(str, rows))}]"
        hits = self._client.search(self.collection, data=[dict(weights)],
                                   anns_field=_SPARSE, filter=expr, limit=min(k, _MAX_LIMIT),
                                   output_fields=[_ID], search_params={"metric_type": "IP"})[0]
        # Float32 scores, as BM25Index.scores sums them: Milvus may sum in float64.
        pairs = sorted(((float(np.float32(h["distance"])), int(h["id"])) for h in hits),
                       key=lambda p: (-p[0], p[1]))
        pairs = [p for p in pairs if p[0] > 0]
        return (np.array([r for _, r in pairs], np.int64),
                np.array([s for s, _ in pairs], np.float32))

    def coverage(self, tokens: Sequence[str]) -> float:
        """As ``BM25Index.coverage``: the IDF-weighted share of query terms the corpus has."""
        uniq = set(tokens)
        if not uniq:
            return 0.0
        known = self._lookup(list(uniq))
        top = math.log1p((self.size + 0.5) / 0.5) if self.size else 1.0
        total = sum(known[t][1] if t in known else top for t in uniq)
        return sum(idf for _, idf in known.values()) / total if total else 0.0

    def max_score(self, tokens: Sequence[str]) -> float:
        # Summed as BM25Index.max_score does: float32, in column order.
        idfs = [np.float32(idf) for _, idf in sorted(self._lookup(tokens).values())]
        return float(sum(idfs, np.float32(0)) * (self.k1 + 1))

    def drop(self) -> None:
        for name in (self.collection, self.terms):
            self._client.drop_collection(name)

    def close(self) -> None:
        self._client.close()


def drop_collections(meta: dict[str, Any], token: str | None = None) -> None:
    """Delete the collections a manifest's ``lexical`` entry names, in either layout (an
    old generation's, built before the sparse-weight one)."""
    client = _pymilvus().MilvusClient(uri=meta["uri"], token=token or "")
    try:
        for name in (meta["collection"], meta.get("terms", f"{meta['collection']}_terms")):
            if client.has_collection(name):
                client.drop_collection(name)
    finally:
        client.close()
