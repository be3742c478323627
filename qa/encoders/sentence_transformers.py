"""Any sentence-transformers model through torch: the reference backend.

The only module that imports sentence_transformers (lazily).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from qa.encoders.base import Kind
from qa.encoders.late import Span, pool_spans
from qa.errors import ModelUnavailable


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

    def embed_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[Span]],
                         kind: Kind = "passage") -> tuple[np.ndarray, list[np.ndarray]]:
        """Each text's vector and, from the same forward pass, one vector per character span
        of it, pooled from the token states (late chunking, :mod:`qa.encoders.late`)."""
        import torch

        prompt = self._prompts.get(kind, "")
        with torch.inference_mode():
            # output_value=None: per text, a dict of its token states, mask and pooled vector.
            feats: list[dict[str, Any]] = self._model.encode(  # type: ignore[assignment]
                list(texts), prompt_name=kind if prompt else None, batch_size=self.batch_size,
                output_value=None, show_progress_bar=False)
        # The same tokenizer and truncation as encode's, for the offsets it does not return.
        enc = self._tokenizer([prompt + t for t in texts], truncation=True,
                              max_length=self.max_tokens, return_offsets_mapping=True)
        out = np.stack([f["sentence_embedding"].float().numpy() for f in feats])
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        pooled: list[np.ndarray] = []
        for i, f in enumerate(feats):
            n = int(f["attention_mask"].sum())
            if n != len(enc["input_ids"][i]):
                raise ModelUnavailable(f"token count mismatch for text {i}: the model saw {n} "
                                       f"tokens, the tokenizer gives {len(enc['input_ids'][i])}")
            pooled.append(pool_spans(f["token_embeddings"][:n].float().numpy(),
                                     enc["offset_mapping"][i], spans[i], len(prompt), out[i])
                          if len(spans[i]) else np.zeros((0, self.dim), np.float32))
        return out, pooled

    def count_tokens(self, text: str) -> int:
        # verbose=False: counting a text longer than the window is the point, not an error.
        return len(self._tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])
