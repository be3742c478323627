"""The lexical leg in Milvus: full-text search with Milvus's own BM25 (a ``BM25`` function
from an analysed ``VARCHAR`` into a ``SPARSE_FLOAT_VECTOR`` with a ``SPARSE_INVERTED_INDEX``),
so a serving replica holds no BM25 file.

What Milvus analyses is *our* tokens, space-joined, under its ``standard`` tokenizer (which
keeps a run of CJK characters whole, so a space-joined jieba token stays one term): the
mined policy-term dictionary, Traditional->Simplified and full-width folding, and the stop
words carry over unchanged, and the scores are BM25 over the same terms (k1 1.2, b 0.75).
Milvus's ``jieba`` analyzer on the raw text would tokenise differently (its own dictionary,
no T->S); docs/SCALING.md measures both.

``coverage`` and ``max_score`` (the query-aware weight) need each term's IDF, which Milvus
does not expose: a second, small collection holds the vocabulary with our IDF.
pymilvus itself is imported through ``qa.index.vectors.milvus``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import IndexNotReady
from qa.index.lexical import BM25Index
from qa.index.vectors.milvus import _pymilvus, is_local_uri

_ID, _TEXT, _SPARSE = "id", "tokens", "sparse"
_TERM, _IDF, _PAD = "term", "idf", "pad"
_BATCH = 2_000
_MAX_TEXT = 65_535
_TERM_LEN = 512


def _quote(term: str) -> str:
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


class MilvusLexical:
    """BM25 top-k in one Milvus collection, with our IDFs in another; same methods as
    ``BM25Index`` that search uses (``top``, ``coverage``, ``max_score``, ``size``)."""

    def __init__(self, uri: str, collection: str, token: str | None = None, *,
                 k1: float = 1.2, b: float = 0.75, size: int = 0) -> None:
        pm = _pymilvus()
        self.uri = str(Path(uri).resolve()) if is_local_uri(uri) else uri
        self.collection, self.terms = collection, f"{collection}_terms"
        self.k1, self.b, self.size = k1, b, size
        # search asks coverage() then max_score() for the same tokens: one round trip.
        self._last: tuple[frozenset[str], dict[str, float]] = (frozenset(), {})
        try:
            self._client = pm.MilvusClient(uri=self.uri, token=token or "")
        except Exception as exc:
            raise IndexNotReady(f"cannot open Milvus at {self.uri}: {exc}") from exc

    # -- build ----------------------------------------------------------------------------
    @classmethod
    def create(cls, uri: str, collection: str, token: str | None,
               docs: Sequence[Sequence[str]], bm25: BM25Index) -> MilvusLexical:
        """Fill a fresh pair of collections from the passages' tokens and the local BM25's
        vocabulary (built in the same pass, so the IDFs are exactly ours)."""
        self = cls(uri, collection, token, k1=bm25.k1, b=bm25.b, size=len(docs))
        pm, client = _pymilvus(), self._client
        for name in (self.collection, self.terms):
            if client.has_collection(name):
                client.drop_collection(name)
        schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID, pm.DataType.INT64, is_primary=True)
        schema.add_field(_TEXT, pm.DataType.VARCHAR, max_length=_MAX_TEXT, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        schema.add_field(_SPARSE, pm.DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(pm.Function(name="bm25", function_type=pm.FunctionType.BM25,
                                        input_field_names=[_TEXT], output_field_names=[_SPARSE]))
        index = client.prepare_index_params()
        index.add_index(field_name=_SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                        params={"bm25_k1": bm25.k1, "bm25_b": bm25.b})
        client.create_collection(self.collection, schema=schema, index_params=index,
                                 consistency_level="Strong")
        for lo in range(0, len(docs), _BATCH):
            client.insert(self.collection, [
                {_ID: lo + i, _TEXT: " ".join(toks)[:_MAX_TEXT]}
                for i, toks in enumerate(docs[lo:lo + _BATCH])])
        # Milvus requires a vector field in every collection: the IDF rides in a 2-d one.
        terms = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        terms.add_field(_TERM, pm.DataType.VARCHAR, max_length=_TERM_LEN, is_primary=True)
        terms.add_field(_IDF, pm.DataType.FLOAT)
        terms.add_field(_PAD, pm.DataType.FLOAT_VECTOR, dim=2)
        tindex = client.prepare_index_params()
        tindex.add_index(field_name=_PAD, index_type="FLAT", metric_type="IP")
        client.create_collection(self.terms, schema=terms, index_params=tindex,
                                 consistency_level="Strong")
        vocab = sorted(bm25.vocab.items(), key=lambda kv: kv[1])
        for lo in range(0, len(vocab), _BATCH):
            client.insert(self.terms, [
                {_TERM: t[:_TERM_LEN], _IDF: float(bm25.idf[i]), _PAD: [0.0, 0.0]}
                for t, i in vocab[lo:lo + _BATCH]])
        client.flush(self.collection)
        client.flush(self.terms)
        return self

    def describe(self) -> dict[str, Any]:
        return {"engine": "milvus-bm25", "uri": self.uri, "collection": self.collection,
                "terms": self.terms, "k1": self.k1, "b": self.b, "count": self.size,
                "analyzer": "standard over our space-joined tokens"}

    @classmethod
    def load(cls, meta: dict[str, Any], token: str | None = None,
             uri: str | None = None) -> MilvusLexical:
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
    def _idf(self, tokens: Sequence[str]) -> dict[str, float]:
        key = frozenset(tokens)
        last = self._last
        if not key or last[0] == key:
            return last[1] if key else {}
        got = self._client.query(self.terms,
                                 filter=f"{_TERM} in [{','.join(map(_quote, sorted(key)))}]",
                                 output_fields=[_TERM, _IDF])
        idf = {r[_TERM]: float(r[_IDF]) for r in got}
        self._last = (key, idf)
        return idf

    def top(self, tokens: Sequence[str], k: int,
            allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ``k`` best passages, best first, ties by row, as
        ``BM25Index.top``; each distinct query term counts once, as there."""
        terms = list(dict.fromkeys(tokens))
        none = np.zeros(0, np.int64), np.zeros(0, np.float32)
        if not terms or k <= 0 or not self.size:
            return none
        expr = ""
        if allowed is not None:
            rows = sorted({int(r) for r in allowed})
            if not rows:
                return none
            expr = f"{_ID} in [{','.join(map(str, rows))}]"
        hits = self._client.search(self.collection, data=[" ".join(terms)], anns_field=_SPARSE,
                                   filter=expr, limit=min(k, 16_384), output_fields=[_ID],
                                   search_params={"metric_type": "BM25"})[0]
        # milvus-lite reports BM25 as a negative distance, a server as a positive score.
        pairs = sorted(((abs(float(h["distance"])), int(h["id"])) for h in hits),
                       key=lambda p: (-p[0], p[1]))
        return (np.array([r for _, r in pairs], np.int64),
                np.array([s for s, _ in pairs], np.float32))

    def coverage(self, tokens: Sequence[str]) -> float:
        """As ``BM25Index.coverage``: the IDF-weighted share of query terms the corpus has."""
        uniq = set(tokens)
        if not uniq:
            return 0.0
        idf = self._idf(list(uniq))
        top = math.log1p((self.size + 0.5) / 0.5) if self.size else 1.0
        total = sum(idf.get(t, top) for t in uniq)
        return sum(idf.values()) / total if total else 0.0

    def max_score(self, tokens: Sequence[str]) -> float:
        return float(sum(self._idf(tokens).values()) * (self.k1 + 1))

    def drop(self) -> None:
        for name in (self.collection, self.terms):
            self._client.drop_collection(name)

    def close(self) -> None:
        self._client.close()
