"""Embedding a build's new passages on a Ray cluster (the only module that imports ray).

``RayEmbed`` is an ``EmbedFn`` for ``qa.index.build.build_index``: the build still reads,
chunks, tokenises and writes the generation in this process, exactly as a single-process
build does; only the passages to embed (new or changed documents, so incremental builds
send just those) go to a pool of actors, each holding its own copy of the encoder. The
encoder is the expensive part (a few hundred passages a second per 2 cores), chunking and
writing are not, so this is where extra machines pay off.

Actors rather than Ray Data: the texts are already in memory in the driver, and
``ActorPool`` keeps their order without a shuffle or an object-store round trip per row.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Embedder, embed
from qa.errors import IndexMismatch, ModelUnavailable

# Texts per actor call: enough batches that the round trip (~ms) is small against the
# encoder's time, few enough that two workers share the tail of the work evenly.
_BATCHES_PER_TASK = 4


def _ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelUnavailable("`qa index --ray` needs Ray: run `pip install 'qa[ray]'`") from exc
    return ray


class EncoderWorker:
    """One encoder in one Ray actor; built there by ``factory`` (so weights never travel)."""

    def __init__(self, factory: Callable[[], Embedder]) -> None:
        self.embedder = factory()

    def fingerprint(self) -> str:
        return self.embedder.fingerprint

    def embed(self, task: int, texts: list[str], batch_size: int) -> tuple[int, np.ndarray]:
        return task, embed(self.embedder, texts, "passage", batch_size=batch_size)


class RayEmbed:
    """Spread passage embedding over ``workers`` actors on the cluster at ``address``
    (``"local"`` starts one on this machine with ``workers * cpus_per_worker`` CPUs; an
    existing ``ray.init`` in this process is reused). Use as a context manager."""

    def __init__(self, address: str, factory: Callable[[], Embedder], fingerprint: str, *,
                 workers: int = 2, cpus_per_worker: float = 1, batch_size: int = 32) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        ray = _ray()
        self._started = False
        if not ray.is_initialized():
            if address == "local":
                # Local workers must import this very package (a worktree, not site-packages).
                root = str(Path(__file__).resolve().parents[2])
                path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
                ray.init(num_cpus=int(np.ceil(workers * cpus_per_worker)),
                         include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": path}})
            else:
                ray.init(address=address, log_to_driver=False)
            self._started = True
        self.batch_size = batch_size
        actor = ray.remote(num_cpus=cpus_per_worker)(EncoderWorker)
        self._actors = [actor.remote(factory) for _ in range(workers)]
        found = set(ray.get([a.fingerprint.remote() for a in self._actors]))
        if found != {fingerprint}:
            self.close()
            # Vectors of other weights would be silently wrong neighbours: refuse.
            raise IndexMismatch(f"Ray workers loaded {sorted(found)}, this process "
                                f"{fingerprint}: install the same model on every node")

    def __call__(self, texts: Sequence[str],
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
        from ray.util import ActorPool

        # Length-sorted, as in-process embedding does, so a task pads little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        step = self.batch_size * _BATCHES_PER_TASK
        tasks = [order[i:i + step] for i in range(0, len(order), step)]
        out: np.ndarray | None = None
        done = 0
        if progress:
            progress(0)
        pool = ActorPool(self._actors)
        jobs = [(n, [texts[i] for i in rows]) for n, rows in enumerate(tasks)]
        for n, vecs in pool.map_unordered(
                lambda a, job: a.embed.remote(job[0], job[1], self.batch_size), jobs):
            if out is None:
                out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            out[tasks[n]] = vecs
            done += len(tasks[n])
            if progress:
                progress(done)
        return out if out is not None else np.zeros((0, 0), np.float32)

    def close(self) -> None:
        ray = _ray()
        for a in getattr(self, "_actors", []):
            ray.kill(a)
        self._actors = []
        if self._started:
            ray.shutdown()
            self._started = False

    def __enter__(self) -> RayEmbed:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
