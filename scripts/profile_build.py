"""Profile a real ``build_index`` of the CMRC 2018 dev paragraphs (848) with cProfile, in the
default configuration (the configured backend, the second encoder, sentence vectors on).

    python scripts/profile_build.py [--paragraphs N] [--top 30] [--out DIR]
    python scripts/profile_build.py --compare /path/to/other/checkout [--rounds 1]

Each build runs in a fresh process whose ``qa`` is imported from a checkout (this one by
default). ``--compare`` builds with the other checkout and with this one, alternately
(other first), so a busy minute on a shared machine hits both, and prints them side by
side: wall time, BuildReport.stages where the checkout has them, and the profile's own time
split into the encoders' calls (the backends' ``embed_batch``, tokenisation included) and
everything else. One JSON line per build, then a summary.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Modules whose embed_batch is an encoder's own call (not the ensemble that delegates).
_ENCODER_FILES = ("qa/encoders/onnx.py", "qa/encoders/use.py",
                  "qa/encoders/sentence_transformers.py")


def _profile_one(data_dir: Path, paragraphs: int | None, top: int, out: Path | None,
                 cpu: bool) -> None:
    """Runs inside the child process: one profiled build; prints the profile and a JSON line."""
    from qa.config import load_settings
    from qa.evaluation.bench import _trim_squad
    from qa.evaluation.retrieval import load_squad
    from qa.index.build import build_index
    from qa.service.wiring import make_embedder

    settings = load_settings(allow_download=False)
    emb = make_embedder(settings)
    emb.embed_batch(["预热"], "passage")  # first-call allocations stay out of the profile
    second = getattr(emb, "second", None)
    if second is not None:
        second.embed_batch(["预热"], "passage")
    with tempfile.TemporaryDirectory(prefix="qa-profile-") as tmp:
        src = _trim_squad(data_dir / "cmrc2018" / "cmrc2018_dev.json",
                          Path(tmp) / "cmrc.json", paragraphs=paragraphs)
        bench = load_squad(src, name="cmrc")
        n = sum(len(a["paragraphs"]) for a in json.loads(src.read_text("utf-8"))["data"])
        # CPU time of the whole process (every thread) as the profiler's clock with --cpu: on
        # a machine shared with other jobs it moves far less than wall time between runs.
        prof = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
        t0, c0 = time.perf_counter(), time.process_time()
        prof.enable()
        report = build_index(bench.corpus_dir, Path(tmp) / "index", emb,
                             batch_size=settings.batch_size,
                             embed_context=settings.embed_context)
        prof.disable()
        wall, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    stats = pstats.Stats(prof)
    # The encoders' calls, whole (tokenisation included): the cumulative time of the
    # backends' embed_batch, which never call one another.
    encoders = sum(v[3] for (filename, _line, name), v in stats.stats.items()  # type: ignore[attr-defined]
                   if name == "embed_batch" and filename.endswith(_ENCODER_FILES))
    if out:
        stats.dump_stats(str(out))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    sys.stderr.write(buf.getvalue())
    sys.stdout.write(json.dumps({
        "paragraphs": n, "backend": settings.encoder_backend,
        "second_encoder": settings.second_encoder, "wall_s": round(wall, 2),
        "chunks": report.chunks, "sentence_texts": report.sentences_embedded,
        "second_texts": getattr(report, "second_embedded", None),
        "cpu_s": round(cpu_s, 2), "clock": "cpu" if cpu else "wall",
        "encoders_s": round(encoders, 2),
        "outside_encoders_s": round((cpu_s if cpu else wall) - encoders, 2),
        "stages": getattr(report, "stages", None)}, ensure_ascii=False) + "\n")


def _child(repo: Path, args: argparse.Namespace, label: str, out_dir: Path | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child",
           "--data-dir", str(args.data_dir), "--top", str(args.top)]
    if args.cpu:
        cmd.append("--cpu")
    if args.paragraphs:
        cmd += ["--paragraphs", str(args.paragraphs)]
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        cmd += ["--pstats", str(out_dir / f"{label}.pstats")]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo, check=False)
    if out_dir:
        (out_dir / f"{label}.txt").write_text(done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stderr[-2000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["label"] = label
    row["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--paragraphs", type=int, default=None)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--compare", type=Path, default=None,
                    help="another checkout (e.g. a worktree of main) to build with as well")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None,
                    help="a folder for each build's pstats and printed profile")
    ap.add_argument("--cpu", action="store_true",
                    help="profile and split by the process's CPU time instead of wall time")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pstats", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _profile_one(args.data_dir, args.paragraphs, args.top, args.pstats, args.cpu)
        return
    rows = []
    for r in range(args.rounds):
        if args.compare:
            rows.append(_child(args.compare.resolve(), args, f"before-{r}", args.out))
            sys.stdout.write(json.dumps(rows[-1], ensure_ascii=False) + "\n")
        rows.append(_child(ROOT, args, f"after-{r}" if args.compare else f"build-{r}",
                           args.out))
        sys.stdout.write(json.dumps(rows[-1], ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if args.compare:
        before = [x for x in rows if x["label"].startswith("before")]
        after = [x for x in rows if x["label"].startswith("after")]
        for key in ("wall_s", "cpu_s", "encoders_s", "outside_encoders_s"):
            b = sum(x[key] for x in before) / len(before)
            a = sum(x[key] for x in after) / len(after)
            sys.stdout.write(f"{key}: before {b:.1f}  after {a:.1f}  "
                             f"({b / a if a else float('nan'):.2f}x)\n")


if __name__ == "__main__":
    main()
