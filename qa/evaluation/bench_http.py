"""The HTTP half of ``qa bench``: a real ``qa serve`` on 127.0.0.1 and a bounded load.

The server is a child process started by the benchmark on a free loopback port; start-up is
timed from the spawn to the first ``/readyz`` 200, and its peak resident memory (VmHWM) is
read from /proc before it is stopped. The load generator is a pool of client threads sharing
one httpx client; every level is bounded by a request count and a time limit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds (None without samples)."""
    if not seconds:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    ms = np.asarray(seconds) * 1000.0
    return {f"p{p}_ms": round(float(np.percentile(ms, p)), 2) for p in (50, 95, 99)}


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MiB, where /proc has it."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far, where /proc has it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    url: str
    pid: int
    startup_s: float
    log: Path


@contextlib.contextmanager
def serve(index_dir: Path, corpus_dir: Path, env: dict[str, str], log: Path,
          timeout: float = 600.0, cwd: Path | None = None) -> Iterator[Server]:
    """``qa serve`` on a free loopback port with ``env`` added to this process's environment
    (and ``cwd`` as its working directory); yields once /readyz says 200, stops the server
    (SIGTERM, then SIGKILL) on the way out."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "qa", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--index", str(index_dir), "--corpus", str(corpus_dir)]
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=5.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {proc.returncode}; see {log}")
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"the server was not ready after {timeout:.0f}s; see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{url}/readyz").status_code == 200:
                        break
                time.sleep(0.05)
        yield Server(url, proc.pid, time.perf_counter() - started, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def load(url: str, queries: Sequence[str], concurrency: int, max_requests: int,
         max_seconds: float, top_k: int = 10) -> dict[str, Any]:
    """POST /search with ``concurrency`` client threads, each query once, until
    ``max_requests`` are done or ``max_seconds`` have passed; latency and throughput."""
    import httpx

    todo = list(queries[:max_requests])
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    cursor = iter(range(len(todo)))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=url, timeout=60.0, limits=limits) as client:
        deadline = time.perf_counter() + max_seconds

        def worker() -> None:
            while time.perf_counter() < deadline:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = client.post("/search", json={"query": todo[i], "top_k": top_k})
                    ok = r.status_code == 200
                    why = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, why = False, type(exc).__name__
                took = time.perf_counter() - t0
                with lock:
                    (latencies.append(took) if ok else errors.append(why))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    return {"concurrency": concurrency, "requests": len(latencies), "errors": len(errors),
            "error_kinds": sorted(set(errors))[:3], "seconds": round(wall, 2),
            "throughput_qps": round(len(latencies) / wall, 2) if wall else None,
            **percentiles(latencies)}


def load_measured(server: Server, queries: Sequence[str], concurrency: int, max_requests: int,
                  max_seconds: float) -> dict[str, Any]:
    """``load`` plus the server's CPU milliseconds per request over the level (all its
    threads: HTTP, search, the encoder, and any idle spinning of their thread pools)."""
    cpu0 = cpu_seconds(server.pid)
    level = load(server.url, queries, concurrency, max_requests, max_seconds)
    cpu1 = cpu_seconds(server.pid)
    if cpu0 is not None and cpu1 is not None and level["requests"]:
        level["server_cpu_ms_per_request"] = round((cpu1 - cpu0) * 1000 / level["requests"], 2)
    return level


def in_process(encode_one: Any, search: Any, queries: Sequence[str]) -> dict[str, Any]:
    """Single queries in this process, one at a time: ``encode_one(q)`` then
    ``search(vec)``; the floor that HTTP latency is compared with."""
    latencies = []
    for q in queries:
        t0 = time.perf_counter()
        search(encode_one(q))
        latencies.append(time.perf_counter() - t0)
    return {"requests": len(latencies), **percentiles(latencies),
            "throughput_qps": round(len(latencies) / sum(latencies), 2) if latencies else None}
