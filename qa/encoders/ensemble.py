"""The first encoder with a second one riding along (``QA_SECOND_ENCODER``).

:class:`WithSecond` is the first encoder as far as the :class:`~qa.encoders.base.Embedder`
interface goes (its vectors, fingerprint, token count and chunk windows), and carries the
second encoder as ``.second``. Passing it where an embedder goes is what switches the
ensemble on: ``build_index`` stores the second encoder's vectors beside the first one's,
``open_index`` checks their fingerprint, and ``Searcher`` fuses both per query
(qa.retrieve.second). Nothing else in the pipeline needs to know.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qa.encoders.base import Embedder, Kind, embed_spans
from qa.encoders.late import Span


class WithSecond:
    def __init__(self, primary: Embedder, second: Embedder) -> None:
        self.primary = primary
        self.second = second
        self.model_id = primary.model_id
        self.dim = primary.dim
        self.fingerprint = primary.fingerprint
        self.max_tokens = primary.max_tokens

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        return self.primary.embed_batch(texts, kind)

    def embed_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[Span]],
                         kind: Kind = "passage") -> tuple[np.ndarray, list[np.ndarray]]:
        """The first encoder's late-chunked vectors (the second's are the build's business)."""
        return embed_spans(self.primary, texts, spans, kind, batch_size=max(1, len(texts)))

    def count_tokens(self, text: str) -> int:
        return self.primary.count_tokens(text)
