"""``qa bench``'s indexing figures: ``build_index`` of the CMRC 2018 dev paragraphs per
pipeline row, and a synthetic corpus of N paragraphs assembled from the benchmark data,
built in a fresh process whose resident memory is sampled during the build.

    python -m qa.evaluation.bench_build --data-dir ../shared/data --paragraphs 20000 \\
        [--backend onnx|hashing] [--second-encoder use-multilingual|none] [--work /tmp/x]

The paragraphs are XQuAD's (Chinese and English) and CMRC 2018 dev's, repeated in a shuffled
order until there are N, 25 to a document. Printed (one JSON line): the build's seconds and
stages, passages/s, the resident memory before the build (interpreter + models) and its
peak during the build, and the bytes of the vectors it keeps, so that the memory a build
needs beyond its vectors is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.encoders.base import Embedder

Log = Callable[[str], None]

PER_DOC = 25
# Row options of the pipeline table:
# "<backend>[@<batch>][+paragraphs-only|+late][+no-second]".
OPTIONS = ("paragraphs-only", "late", "no-second")


def _memory_mb() -> tuple[float, float]:
    """(resident, anonymous resident) MiB of this process. The second leaves out pages of
    mapped files (shared or not), which the kernel can drop and reread: what a build truly
    holds."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        fields = fh.read().split()
    page = os.sysconf("SC_PAGE_SIZE") / 2**20
    return int(fields[1]) * page, (int(fields[1]) - int(fields[2])) * page


def _rss_mb() -> float:
    return _memory_mb()[0]


class PeakRss:
    """The largest resident set of this process while the ``with`` block runs, and the
    largest anonymous part of it, sampled every 20 ms (ru_maxrss would also count loading
    the models, which happens before)."""

    def __init__(self) -> None:
        self.peak = self.peak_anon = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        rss, anon = _memory_mb()
        self.peak, self.peak_anon = max(self.peak, rss), max(self.peak_anon, anon)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __enter__(self) -> PeakRss:
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def source_paragraphs(data_dir: Path) -> list[str]:
    """Every distinct paragraph of XQuAD (zh, en) and CMRC 2018 dev."""
    files = [data_dir / "xquad" / "xquad.zh.json", data_dir / "xquad" / "xquad.en.json",
             data_dir / "cmrc2018" / "cmrc2018_dev.json"]
    out: dict[str, None] = {}
    for f in files:
        for art in json.loads(f.read_text(encoding="utf-8"))["data"]:
            for p in art["paragraphs"]:
                out.setdefault(p["context"].strip(), None)
    return [p for p in out if p]


def synthetic_corpus(data_dir: Path, n: int, dest: Path, seed: int = 0) -> Path:
    """``n`` paragraphs (repeated, shuffled) as ``ceil(n / 25)`` text documents in ``dest``."""
    pool = source_paragraphs(data_dir)
    rng = random.Random(seed)
    picked: list[str] = []
    while len(picked) < n:
        batch = pool[:]
        rng.shuffle(batch)
        picked.extend(batch[:n - len(picked)])
    dest.mkdir(parents=True, exist_ok=True)
    for d in range(0, n, PER_DOC):
        (dest / f"s{d // PER_DOC:05d}.txt").write_text("\n\n".join(picked[d:d + PER_DOC]) + "\n",
                                                       encoding="utf-8")
    return dest


def measure(corpus: Path, index: Path, backend: str, second_encoder: str,
            paragraphs: int) -> dict[str, Any]:
    """Build ``corpus`` in this process and report time and memory (see the module doc)."""
    from qa.config import load_settings
    from qa.index.build import build_index
    from qa.index.manifest import current_generation
    from qa.service.wiring import make_embedder

    settings = load_settings(allow_download=False, second_encoder=second_encoder, **(
        {"embedder": "hashing"} if backend == "hashing" else {"encoder_backend": backend}))
    emb = make_embedder(settings)
    emb.embed_batch(["预热一下。", "warm up"], "passage")
    second = getattr(emb, "second", None)
    if second is not None:
        second.embed_batch(["预热一下。", "warm up"], "passage")
    before, anon_before = _memory_mb()
    with PeakRss() as peak:
        report = build_index(corpus, index, emb, batch_size=settings.batch_size)
    gen = current_generation(index)
    assert gen is not None
    vec_mb = sum((gen / f).stat().st_size for f in ("vectors.npy", "sentences.npy",
                                                     "use_vectors.npy", "use_sentences.npy")
                 if (gen / f).exists()) / 2**20
    return {"backend": backend, "second_encoder": second_encoder if second else "none",
            "paragraphs": paragraphs, "chunks": report.chunks,
            "sentences": report.sentences_embedded, "seconds": round(report.seconds, 2),
            "passages_per_s": round(paragraphs / report.seconds, 2),
            "ms_per_passage": round(1000 * report.seconds / paragraphs, 2),
            "stages": report.stages, "rss_before_build_mb": round(before, 1),
            "peak_rss_mb": round(peak.peak, 1),
            "build_extra_peak_mb": round(peak.peak - before, 1),
            "anon_before_build_mb": round(anon_before, 1),
            "build_extra_peak_anon_mb": round(peak.peak_anon - anon_before, 1),
            "vectors_mb": round(vec_mb, 1)}


def run(data_dir: Path, paragraphs: int, backend: str, second_encoder: str,
        work: Path | None = None, timeout: float = 7200) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter, so that the peak is this build's alone."""
    with tempfile.TemporaryDirectory(prefix="qa-bench-build-") as tmp:
        base = Path(work or tmp)
        corpus = synthetic_corpus(data_dir, paragraphs, base / f"corpus-{paragraphs}")
        cmd = [sys.executable, "-m", "qa.evaluation.bench_build", "--measure",
               "--corpus", str(corpus), "--index", str(base / f"index-{paragraphs}-{backend}"),
               "--backend", backend, "--second-encoder", second_encoder,
               "--paragraphs", str(paragraphs)]
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [root, os.environ.get("PYTHONPATH")]))}
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)
        if done.returncode != 0:
            return {"error": done.stderr[-800:], "wall_s": round(time.perf_counter() - t0, 1)}
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def pipeline_spec(name: str, settings: Settings) -> tuple[str, int, str, bool]:
    """(backend, batch size, sentence-vector mode, second encoder?) of a pipeline row's name;
    the mode is "none" with ``+paragraphs-only``, "late" with ``+late``, else "separate"."""
    spec, *options = name.split("+")
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown pipeline option(s) {sorted(unknown)} in {name!r}")
    if {"paragraphs-only", "late"} <= set(options):
        raise ValueError(f"{name!r}: +paragraphs-only builds no sentence vectors to pool late")
    backend, _, batch = spec.partition("@")
    mode = "none" if "paragraphs-only" in options else "late" if "late" in options \
        else "separate"
    return (backend, int(batch) if batch else settings.batch_size, mode,
            "no-second" not in options)


def bench_pipeline(corpus: Path, paragraphs: int, work: Path, embedders: dict[str, Embedder],
                   bare_pps: float, settings: Settings, log: Log) -> dict[str, Any]:
    """``build_index`` per row; passages/s counts the source paragraphs (a paragraph longer
    than the model's window becomes several chunks)."""
    from qa.encoders.base import embed_spans
    from qa.index.build import build_index

    out: dict[str, Any] = {"paragraphs": paragraphs}
    for name, emb in embedders.items():
        _, batch, sentences, with_second = pipeline_spec(name, settings)
        if not with_second:
            emb = getattr(emb, "primary", emb)  # the first encoder alone
        if sentences == "late":
            # The token-states graph is exported (once) and opened before the clock starts,
            # as the default graph is when the embedder is made.
            embed_spans(emb, ["预热。两句。"], [[(0, 3), (3, 6)]])
        r = build_index(corpus, work / f"index-{name}", emb, batch_size=batch,
                        embed_context=settings.embed_context, sentence_vectors=sentences)
        second = getattr(emb, "second", None)
        texts = r.embedded + r.sentences_embedded
        out[name] = {"seconds": round(r.seconds, 2), "chunks": r.chunks,
                     "sentence_texts": r.sentences_embedded,
                     "sentences_pooled": r.sentences_pooled,
                     "second_encoder": second.model_id if second is not None else None,
                     "second_texts": r.second_embedded,
                     "texts_per_s": round(texts / r.seconds, 2),
                     "passages_per_s": round(paragraphs / r.seconds, 2),
                     "passages_per_s_vs_bare_encoder": round(paragraphs / r.seconds / bare_pps, 2),
                     "stages": r.stages}
        log(f"pipeline {name}: {r.summary()} {json.dumps(r.stages)}")
    return out


def bench_build_scale(data_dir: Path, paragraphs: int, settings: Settings,
                      log: Log, real_encoders: bool = False) -> dict[str, Any]:
    """The synthetic build at a quarter of ``paragraphs`` and at ``paragraphs``, each in a
    fresh process: seconds, passages/s and peak memory (the slope shows what grows).

    By default with the hashing fake as encoder: what is measured at scale is the build's
    own cost and memory (the encoders' cost per passage is the pipeline table's, and does
    not change with the corpus size), in minutes; ``real_encoders`` runs the configured
    ones, hours for 20,000 paragraphs on 2 cores."""
    out: dict[str, Any] = {}
    fake = settings.embedder == "hashing" or not real_encoders
    backend = "hashing" if fake else settings.encoder_backend
    # The hashing fake never carries a second encoder (qa.service.wiring.make_embedder).
    second = "none" if backend == "hashing" else settings.second_encoder
    for n in dict.fromkeys([max(1, paragraphs // 4), paragraphs]):
        log(f"synthetic build of {n} paragraphs ({backend}, second encoder {second}) ...")
        out[str(n)] = run(data_dir, n, backend, second)
        log(f"synthetic build {n}: {json.dumps(out[str(n)])}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="qa bench: a synthetic build's time and memory")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--paragraphs", type=int, default=20_000)
    ap.add_argument("--backend", default="onnx", help="an encoder backend, or hashing")
    ap.add_argument("--second-encoder", default="use-multilingual")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        out = measure(args.corpus, args.index, args.backend, args.second_encoder,
                      args.paragraphs)
    else:
        out = run(args.data_dir, args.paragraphs, args.backend, args.second_encoder, args.work)
    sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
