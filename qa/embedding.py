"""The Embedder interface and its backends.

This is the only module that imports sentence_transformers (lazily). Every backend
returns L2-normalised float32 rows, so inner product is cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import numpy as np

from qa.errors import ModelUnavailable

Kind = Literal["query", "passage"]


class Embedder(Protocol):
    """Turns texts into unit vectors. ``fingerprint`` names the exact weights and backend,
    so an index never mixes vectors from two of them."""

    model_id: str
    dim: int
    fingerprint: str
    max_tokens: int

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def embed(embedder: Embedder, texts: Sequence[str], kind: Kind, batch_size: int = 64,
          progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Embed any number of texts in batches, reporting how many are done after each.

    Texts are batched in order of length (and put back in their order after): an index mixes
    512-token paragraphs with 20-token sentences, and a batch pads every text to its longest.
    """
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        out[rows] = embedder.embed_batch([texts[r] for r in rows], kind)
        if progress:
            progress(min(len(texts), i + batch_size))
    return out


class HashingEmbedder:
    """A fast deterministic fake: hashes jieba tokens and character bigrams into a small
    vector, so passages that share words with a query still rank first. For unit tests
    and for trying the service without model weights; never for real retrieval."""

    model_id = "hashing-fake"
    max_tokens = 512

    def __init__(self, dim: int = 256) -> None:
        from qa.tokenize import Tokenizer, normalize

        self.dim = dim
        self.fingerprint = f"hashing-fake-{dim}-v1"
        self._tok = Tokenizer()
        self._normalize = normalize

    def _features(self, text: str) -> list[str]:
        norm = self._normalize(text)
        chars = [c for c in norm if not c.isspace()]
        return self._tok(text) + ["".join(p) for p in zip(chars, chars[1:], strict=False)]

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feat in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def count_tokens(self, text: str) -> int:
        return len(text)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, on CPU in float32 (float16 on CPU is far slower).

    The e5 prompts are passed by name: sentence-transformers silently drops a "passage: "
    prefix that is not given as a named prompt.
    """

    def __init__(self, path: str, model_id: str, weights_sha256: str, *,
                 query_prompt: str | None = "query: ", passage_prompt: str | None = "passage: ",
                 batch_size: int = 32, threads: int | None = None) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelUnavailable(
                f"sentence-transformers is not installed ({exc}); run "
                "`pip install torch==2.13.0 && pip install -e .`"
            ) from exc
        torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
        try:  # a per-tensor progress bar on every start is noise in server logs
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover
            pass
        prompts = {k: v for k, v in (("query", query_prompt), ("passage", passage_prompt)) if v}
        try:
            self._model = SentenceTransformer(path, device="cpu", prompts=prompts,
                                              local_files_only=True)
        except Exception as exc:
            raise ModelUnavailable(f"cannot load the embedding model from {path}: {exc}") from exc
        self._model.eval()
        self._prompts = prompts
        self.model_id = model_id
        self.batch_size = batch_size
        get_dim = getattr(self._model, "get_embedding_dimension", None) \
            or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 0)
        self.max_tokens = int(self._model.max_seq_length or 512)
        self.fingerprint = f"st:{weights_sha256}:fp32:q={query_prompt!r}:p={passage_prompt!r}"
        self._tokenizer = self._model.tokenizer

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        import torch

        with torch.inference_mode():
            vecs = self._model.encode(
                list(texts),
                prompt_name=kind if kind in self._prompts else None,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vecs, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        # verbose=False: counting a text longer than the window is the point, not an error.
        return len(self._tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])
