"""The shared LRU behind the query, word-vector and Milvus document caches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from qa.lru import LRU


def test_misses_come_back_once_each_in_order_and_hits_with_their_values():
    cache: LRU[str, int] = LRU(4)
    cache.put({"a": 1, "b": 2})
    hits, missing = cache.get_many(["c", "a", "c", "d", "a"])
    assert hits == {"a": 1} and missing == ["c", "d"]
    assert cache.get("b") == 2 and cache.get("z") is None


def test_the_least_recently_used_goes_first():
    cache: LRU[str, int] = LRU(3)
    cache.put({"a": 1, "b": 2, "c": 3})
    cache.get("a")  # now b is the oldest
    cache.put({"d": 4})
    assert cache.get_many(["a", "b", "c", "d"]) == ({"a": 1, "c": 3, "d": 4}, ["b"])
    assert len(cache) == 3


def test_concurrent_puts_and_gets_keep_the_bound():
    cache: LRU[int, int] = LRU(50)

    def work(start: int) -> None:
        for i in range(start, start + 500):
            cache.put({i: i})
            cache.get_many([i, i - 1, i + 1])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(0, 2000, 500)))
    assert len(cache) == 50
    hits, _ = cache.get_many(range(2000))
    assert all(k == v for k, v in hits.items())
