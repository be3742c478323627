"""MicroBatchingEmbedder: grouping under concurrency, per-caller results, errors, no delay alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from qa.encoders.base import HashingEmbedder
from qa.encoders.batching import MicroBatchingEmbedder


class SlowEmbedder:
    """The hashing fake behind a fixed per-call delay; records every call it gets."""

    model_id = "slow-fake"
    max_tokens = 512

    def __init__(self, delay: float = 0.03, fail_on: str | None = None) -> None:
        self._inner = HashingEmbedder(dim=32)
        self.dim = self._inner.dim
        self.fingerprint = "slow-fake-v1"
        self.delay = delay
        self.fail_on = fail_on
        self.calls: list[tuple[list[str], str]] = []
        self.called = threading.Event()  # set once the encoder is busy with a first batch
        self._lock = threading.Lock()

    def embed_batch(self, texts, kind):
        with self._lock:
            self.calls.append((list(texts), kind))
        self.called.set()
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError(f"cannot embed {self.fail_on!r}")
        return self._inner.embed_batch(texts, kind)

    def count_tokens(self, text: str) -> int:
        return len(text)


def _concurrently(fn, args, workers):
    barrier = threading.Barrier(workers)

    def call(arg):
        barrier.wait()
        return fn(arg)

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(call, a) for a in args]
        return [f.result() if f.exception() is None else f.exception() for f in futures]


def test_concurrent_queries_share_inner_calls_and_get_their_own_rows():
    inner = SlowEmbedder()
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=5, max_batch=32)
    queries = [f"问题 {i} 关于武汉" for i in range(32)]
    results = _concurrently(lambda q: batcher.embed_batch([q], "query"), queries, 32)
    reference = HashingEmbedder(dim=32).embed_batch(queries, "query")
    for q, got, want in zip(queries, results, reference, strict=True):
        assert got.shape == (1, 32), q
        np.testing.assert_allclose(got[0], want, rtol=1e-6)
    # 32 callers, one 30 ms encoder: far fewer inner calls than callers.
    assert len(inner.calls) <= 4
    assert all(kind == "query" for _, kind in inner.calls)
    assert sum(len(t) for t, _ in inner.calls) == 32
    assert max(len(t) for t, _ in inner.calls) <= 32
    batcher.close()


def test_max_batch_is_respected():
    inner = SlowEmbedder(delay=0.02)
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=5, max_batch=4)
    _concurrently(lambda q: batcher.embed_batch([q], "query"), [f"q{i}" for i in range(16)], 16)
    assert max(len(t) for t, _ in inner.calls) <= 4
    assert sum(len(t) for t, _ in inner.calls) == 16
    batcher.close()


def test_a_lone_call_is_not_delayed_by_the_window():
    # A one-minute window: a lone call that waited for it would miss the 10 s deadline by far,
    # so this fails on behaviour, not on the machine's speed.
    inner = SlowEmbedder(delay=0.0)
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=60_000, max_batch=32)
    with ThreadPoolExecutor(1) as pool:
        for i in range(6):
            pool.submit(batcher.embed_batch, [f"alone {i}"], "query").result(timeout=10)
    assert len(inner.calls) == 6
    batcher.close()


def test_errors_reach_only_the_caller_that_caused_them():
    inner = SlowEmbedder(fail_on="bad")
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=5, max_batch=32)
    queries = ["bad"] + [f"good {i}" for i in range(7)]
    results = _concurrently(lambda q: batcher.embed_batch([q], "query"), queries, 8)
    assert isinstance(results[0], ValueError) and "bad" in str(results[0])
    assert all(isinstance(r, np.ndarray) and r.shape == (1, 32) for r in results[1:])
    # The batcher keeps serving after a failure.
    assert batcher.embed_batch(["good again"], "query").shape == (1, 32)
    batcher.close()


def test_passages_and_large_query_batches_pass_straight_through():
    inner = SlowEmbedder(delay=0.0)
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=5, max_batch=4)
    batcher.embed_batch(["a", "b"], "passage")
    batcher.embed_batch(["q1", "q2", "q3", "q4", "q5"], "query")
    assert inner.calls == [(["a", "b"], "passage"), (["q1", "q2", "q3", "q4", "q5"], "query")]
    assert batcher._worker is None  # no thread was needed
    assert batcher.fingerprint == inner.fingerprint and batcher.dim == inner.dim


def test_duplicate_queries_in_one_batch_are_encoded_once():
    inner = SlowEmbedder()
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=20, max_batch=32)
    results = _concurrently(lambda q: batcher.embed_batch([q], "query"), ["same"] * 8 + ["x"], 9)
    assert sum(len(t) for t, _ in inner.calls) < 9
    for r in results[1:8]:
        np.testing.assert_array_equal(r, results[0])
    batcher.close()


def test_close_drains_the_queue_and_later_calls_go_direct():
    inner = SlowEmbedder(delay=0.05)
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=5, max_batch=32)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.embed_batch, [f"q{i}"], "query") for i in range(4)]
        assert inner.called.wait(10), "the batcher never called the encoder"
        batcher.close()
        assert all(f.result().shape == (1, 32) for f in futures)
    assert batcher._worker is not None and not batcher._worker.is_alive()
    assert batcher.embed_batch(["after"], "query").shape == (1, 32)
    assert inner.calls[-1] == (["after"], "query")


@pytest.mark.parametrize("texts", [["one"], ["one", "two"]])
def test_multi_text_query_calls_keep_their_order(texts):
    inner = SlowEmbedder(delay=0.0)
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=1, max_batch=32)
    got = batcher.embed_batch(texts, "query")
    np.testing.assert_allclose(got, HashingEmbedder(dim=32).embed_batch(texts, "query"), rtol=1e-6)
    batcher.close()
