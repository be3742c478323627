"""Search latency over HTTP while an upload is indexed in the background, against idle.

A real ``qa serve`` (the configured embedder: the real model by default) on a copy of the
shipped corpus; sequential ``POST /search`` with distinct XQuAD questions (the query cache
never answers): first idle, then while a large document (``--paragraphs`` CMRC 2018
paragraphs) uploaded through ``POST /documents`` is indexed, until its status is ``ready``.
One server per ``--nice`` value (``QA_BUILD_NICE``, the build process's CPU priority).
Prints one JSON line last.

    python scripts/upload_latency.py --paragraphs 300 --nice 0 --nice 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.evaluation import bench_http as h  # noqa: E402
from qa.evaluation.bench import _questions  # noqa: E402

KEY = "latency-check"


def _document(cmrc: Path, n: int) -> bytes:
    data = json.loads(cmrc.read_text(encoding="utf-8"))["data"]
    paras = [p["context"].strip() for a in data for p in a["paragraphs"]][:n]
    return ("\n\n".join(paras) + "\n").encode("utf-8")


def _distinct(questions: list[str]):
    """The questions, then again with a round number: never the same query twice."""
    for rnd in range(1_000_000):
        for q in questions:
            yield q if rnd == 0 else f"{q} {rnd}"


def _search(client, url: str, query: str) -> float:
    t0 = time.perf_counter()
    r = client.post(f"{url}/search", json={"query": query, "top_k": 5})
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return elapsed


def run(base: Path, work: Path, nice: int, doc: bytes, questions: list[str],
        idle_requests: int) -> dict:
    import httpx

    corpus, index = work / "corpus", work / "index"
    shutil.copytree(ROOT / "corpus", corpus)
    shutil.copytree(base, index)
    env = {"QA_API_KEY": KEY, "QA_BUILD_NICE": str(nice)}
    out: dict = {"nice": nice}
    with h.serve(index, corpus, env, work / "server.log", cwd=ROOT) as server, \
            httpx.Client(timeout=120.0) as client:
        q = _distinct(questions)
        for _ in range(5):  # warm the HTTP path
            _search(client, server.url, next(q))
        idle = [_search(client, server.url, next(q)) for _ in range(idle_requests)]
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = client.post(f"{server.url}/documents", headers={"Authorization": f"Bearer {KEY}"},
                        files={"file": ("large-upload.txt", doc, "text/plain")})
        r.raise_for_status()
        busy, status, polled = [], "queued", time.perf_counter()
        while status in ("queued", "indexing"):
            busy.append(_search(client, server.url, next(q)))
            if time.perf_counter() - polled > 0.5:
                polled = time.perf_counter()
                status = client.get(f"{server.url}/documents/large-upload").json()["status"]
        out["indexing_s"] = round(time.perf_counter() - t0, 1)
        out["final_status"] = status
        chunks = client.get(f"{server.url}/documents/large-upload").json()["chunk_count"]
        # Idle again afterwards: on a shared machine the two idle figures bracket the noise.
        after = [_search(client, server.url, next(q)) for _ in range(idle_requests)]
        out.update(chunks=chunks, idle_requests=len(idle), busy_requests=len(busy),
                   idle=h.percentiles(idle), busy=h.percentiles(busy),
                   idle_after=h.percentiles(after),
                   loadavg_1m_before_upload=round(load_before, 2))
        out["p50_ratio"] = round(out["busy"]["p50_ms"] / out["idle"]["p50_ms"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--paragraphs", type=int, default=300)
    ap.add_argument("--nice", type=int, action="append", help="QA_BUILD_NICE values (10)")
    ap.add_argument("--idle-requests", type=int, default=60)
    a = ap.parse_args()

    questions = _questions(a.data_dir / "xquad" / "xquad.en.json",
                           a.data_dir / "xquad" / "xquad.zh.json")
    doc = _document(a.data_dir / "cmrc2018" / "cmrc2018_dev.json", a.paragraphs)
    results = {"paragraphs": a.paragraphs, "upload_bytes": len(doc), "cpus": os.cpu_count(),
               "runs": []}
    with tempfile.TemporaryDirectory(prefix="qa-upload-latency-") as tmp:
        base = Path(tmp) / "index"
        subprocess.run([sys.executable, "-m", "qa", "index", "--corpus", str(ROOT / "corpus"),
                        "--index", str(base)], check=True, cwd=ROOT)
        for i, nice in enumerate(a.nice or [10]):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            # Each run its own questions: no query repeats across runs either.
            share = questions[i::len(a.nice or [10])]
            res = run(base, work, nice, doc, share, a.idle_requests)
            print(f"nice {nice}: idle p50 {res['idle']['p50_ms']} ms, while indexing p50 "
                  f"{res['busy']['p50_ms']} ms (x{res['p50_ratio']}, {res['busy_requests']} "
                  f"requests over {res['indexing_s']} s)", file=sys.stderr)
            results["runs"].append(res)
    print(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main()
