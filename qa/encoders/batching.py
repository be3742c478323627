"""Micro-batching of concurrent queries: many threads' single-query calls, one encoder call.

A transformer encodes 32 short queries in little more time than one on a CPU, so when the
API's thread pool holds many concurrent searches it pays to hand their queries to the
encoder together. :class:`MicroBatchingEmbedder` wraps any :class:`~qa.encoders.base.Embedder`:

* a query call is queued; one worker thread takes everything queued (up to ``max_batch``
  texts), encodes it in one inner call and hands each caller its rows;
* while the encoder is busy, new queries wait in the queue, so batches form by themselves
  under load; a lone caller finds the worker idle and starts at once (no window);
* only when the previous batch held several callers (evidence of concurrency) does the worker
  hold a batch open for stragglers, until ``max_wait_ms`` after its oldest request arrived;
* passage calls, and query calls of ``max_batch`` texts or more, go straight to the inner
  embedder on the caller's thread (indexing batches its own work).

The vectors are the inner embedder's, so the fingerprint is too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from qa.encoders.base import Embedder, Kind, embed_spans
from qa.encoders.late import Span


class _Request:
    __slots__ = ("texts", "arrived", "done", "result", "error")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.arrived = time.monotonic()
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class MicroBatchingEmbedder:
    """Groups concurrent ``embed_batch(texts, "query")`` calls into one inner call;
    thread-safe. ``close()`` serves what is queued, then stops the worker."""

    def __init__(self, inner: Embedder, max_wait_ms: float = 3.0, max_batch: int = 32) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.fingerprint = inner.fingerprint
        self.max_tokens = inner.max_tokens
        # The second encoder of an ensemble (qa.encoders.ensemble) rides along, unbatched.
        self.second = getattr(inner, "second", None)
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch = max(1, max_batch)
        self.batches = 0  # inner query calls made, for tests and the benchmark
        self.batched_requests = 0
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._last_callers = 0
        self._worker: threading.Thread | None = None

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def embed_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[Span]],
                         kind: Kind = "passage") -> tuple[np.ndarray, list[np.ndarray]]:
        """Indexing's late chunking, straight to the inner embedder like any passage call."""
        return embed_spans(self.inner, texts, spans, kind, batch_size=max(1, len(texts)))

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        texts = list(texts)
        if kind != "query" or not texts or len(texts) >= self.max_batch:
            return self.inner.embed_batch(texts, kind)
        request = _Request(texts)
        with self._cond:
            closed = self._closed
            if not closed:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._run, daemon=True,
                                                    name="qa-query-batcher")
                    self._worker.start()
                self._queue.append(request)
                self._cond.notify()
        if closed:
            return self.inner.embed_batch(texts, kind)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop taking queries (later calls go straight to the inner embedder), finish the
        queued ones and join the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)

    # -- the worker ----------------------------------------------------------------------
    def _take(self) -> list[_Request] | None:
        """The next batch: whatever is queued now, held open for stragglers only when the
        last batch showed concurrency. None when closed and drained."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            batch: list[_Request] = []
            size = 0
            deadline = self._queue[0].arrived + self.max_wait
            while True:
                while self._queue and size + len(self._queue[0].texts) <= self.max_batch:
                    request = self._queue.popleft()
                    batch.append(request)
                    size += len(request.texts)
                if not batch:  # cannot happen: requests are smaller than max_batch
                    batch.append(self._queue.popleft())
                full = size >= self.max_batch or bool(self._queue)
                concurrent = len(batch) > 1 or self._last_callers > 1
                remaining = deadline - time.monotonic()
                if full or self._closed or not concurrent or remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._last_callers = len(batch)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._serve(batch)

    def _serve(self, batch: list[_Request]) -> None:
        unique = list(dict.fromkeys(t for r in batch for t in r.texts))
        try:
            vectors = self.inner.embed_batch(unique, "query")
        except BaseException as exc:  # noqa: BLE001 - handed to the callers, never lost
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            # One bad request must not fail its neighbours: retry each on its own.
            for request in batch:
                self._serve([request])
            return
        self.batches += 1
        self.batched_requests += len(batch)
        row = {t: i for i, t in enumerate(unique)}
        for request in batch:
            request.result = vectors[[row[t] for t in request.texts]]
            request.done.set()
