"""``qa eval`` and ``qa bench``: retrieval quality and speed, from any working folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from qa.cli.app import CorpusOpt, ModelOpt, app, settings_from
from qa.errors import InvalidRequest
from qa.evaluation import locate
from qa.retrieve.query import MODES

DataOpt = Annotated[Path | None, typer.Option(
    envvar="QA_EVAL_DATA", metavar="DIR",
    help="Folder with xquad/ and cmrc2018/ (default: ../shared/data of the working folder or "
         "of the checkout).")]


@app.command("eval")
def eval_(
    benchmark: Annotated[list[str] | None, typer.Option(
        "--benchmark", "-b", metavar="NAME", help="xquad, cmrc, corpus (repeatable; default: all three).")] = None,
    squad: Annotated[Path | None, typer.Option(metavar="FILE", help="Any SQuAD-format file to evaluate.")] = None,
    questions: Annotated[Path | None, typer.Option(
        metavar="FILE", help="With --squad: the same question ids in another language.")] = None,
    data_dir: DataOpt = None,
    questions_dir: Annotated[Path | None, typer.Option(
        metavar="DIR", help="Folder with corpus_questions.jsonl (default: tests/data of the "
                            "working folder or of the checkout).")] = None,
    mode: Annotated[list[str] | None, typer.Option(
        "--mode", "-m", metavar="MODE", help="Modes to measure (default: all four).")] = None,
    limit: Annotated[int | None, typer.Option(metavar="N", min=1, help="At most N questions per slice.")] = None,
    json_out: Annotated[str | None, typer.Option(
        "--json", metavar="FILE", help="Write the full figures as JSON to this file ('-' for stdout).")] = None,
    corpus: CorpusOpt = None, model: ModelOpt = None,
) -> None:
    """Measure retrieval (recall@1/5/10, MRR@10, nDCG@10, no-answer flags) per slice and
    mode, indexing each benchmark through the project's own pipeline.

    Example: qa eval -b xquad --limit 200 --json eval.json
    """
    from qa.evaluation.retrieval import (
        BENCHMARKS,
        evaluate,
        format_table,
        load_squad,
        named_benchmark,
        strip_details,
    )
    from qa.service.wiring import make_embedder

    settings = settings_from(corpus_dir=corpus, model=model)
    names = benchmark or ([] if squad else list(BENCHMARKS))
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise InvalidRequest(f"unknown benchmark {unknown[0]!r}; use {', '.join(BENCHMARKS)} "
                             "or --squad FILE")
    bad_modes = [m for m in mode or [] if m not in MODES]
    if bad_modes:
        raise InvalidRequest(f"unknown mode {bad_modes[0]!r}; use {', '.join(MODES)}")
    # Find every input before loading the model, so a wrong path fails at once.
    data = locate.data_dir(data_dir) if {"xquad", "cmrc"} & set(names) else None
    qdir = locate.questions_dir(questions_dir) if "corpus" in names else None
    cdir = locate.corpus_dir(settings.corpus_dir, corpus is not None)
    embedder = make_embedder(settings)
    benches = []
    if squad is not None:
        extra = [(f"{squad.stem}<-{questions.stem}", questions)] if questions else []
        benches.append(load_squad(squad, extra, limit=limit))
    for name in names:
        benches.append(named_benchmark(name, data or Path("."), cdir, qdir or Path("."), limit))
    results = []
    for bench in benches:
        typer.echo(f"evaluating {bench.name} ...", err=True)
        results.append(evaluate(bench, embedder, modes=mode or list(MODES),
                                embed_context=settings.embed_context,
                                batch_size=settings.batch_size,
                                sentence_vectors=settings.sentence_vectors))
    typer.echo(format_table(results))
    if json_out:
        payload = json.dumps(results if json_out != "-" else [strip_details(r) for r in results],
                             ensure_ascii=False, indent=1)
        if json_out == "-":
            typer.echo(payload)
        else:
            Path(json_out).write_text(payload, encoding="utf-8")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="A reduced run of a few minutes.")] = False,
    data_dir: DataOpt = None,
    doc: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Markdown to write the tables into (default: docs/PERFORMANCE.md, not with "
             "--quick).")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", metavar="BACKEND", help="Encoder backends to compare (repeatable).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", metavar="SECTION",
        help="Only these sections (repeatable): encoder, pipeline (runs encoder too), quality, "
             "batches, http, build, scale. Nothing is written without --doc.")] = None,
    pipeline: Annotated[list[str] | None, typer.Option(
        "--pipeline", metavar="ROW",
        help="Pipeline rows (repeatable): BACKEND[@BATCH][+paragraphs-only|+late]"
             "[+no-second].")] = None,
    build_paragraphs: Annotated[int | None, typer.Option(
        metavar="N", help="Paragraphs of the synthetic build (default 20000; 0 skips it).")] = None,
    build_real_encoders: Annotated[bool, typer.Option(
        help="The synthetic build with the configured encoders (hours for 20,000 paragraphs "
             "on 2 cores) instead of the hashing fake (the build's own cost and memory).")
    ] = False,
    passages: Annotated[int | None, typer.Option(
        metavar="N", help="CMRC 2018 dev paragraphs for the encoder and pipeline tables "
                          "(default: all 848).")] = None,
    model: ModelOpt = None,
) -> None:
    """Measure encoder backends, indexing, HTTP latency, memory and retrieval quality side by
    side in one run; the last stdout line is one JSON object (docs/PERFORMANCE.md).

    Example: qa bench --quick
    """
    import shlex

    from qa.evaluation import bench_report
    from qa.evaluation.bench import BenchConfig, run_bench

    settings = settings_from(model=model)
    data_dir = locate.data_dir(data_dir)
    if not (data_dir / "cmrc2018").is_dir() or not (data_dir / "xquad").is_dir():
        raise InvalidRequest(f"{data_dir} needs both xquad/ and cmrc2018/: pass --data-dir DIR")
    cfg = BenchConfig(data_dir=data_dir)
    if quick:
        default = settings.encoder_backend
        cfg = BenchConfig(data_dir=data_dir,
                          backends=[b for b in dict.fromkeys([default, "onnx-int8"])
                                    if b != "torch"],
                          pipeline_backends=list(dict.fromkeys(["torch", default, "onnx-int8"])),
                          quality_backends=list(dict.fromkeys(["torch", default, "onnx-int8"])),
                          http_backends=[settings.encoder_backend], passages=48, blocks=2,
                          xquad_articles=4, requests={1: 30, 8: 60, 32: 120},
                          level_seconds=20.0, in_process_queries=30, batch_queries=64,
                          scale_n=None, build_paragraphs=200)
    if backend:
        cfg.backends = [b for b in backend if b != "torch"]
        cfg.quality_backends = list(dict.fromkeys(["torch", *backend]))
    if only:
        from qa.evaluation.bench import SECTIONS

        unknown = sorted(set(only) - set(SECTIONS))
        if unknown:
            raise InvalidRequest(f"unknown section(s) {unknown}; use {', '.join(SECTIONS)}")
        cfg.sections = only
    if pipeline:
        from qa.evaluation.bench_build import pipeline_spec

        try:
            for row in pipeline:
                pipeline_spec(row, settings)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        cfg.pipeline_backends = pipeline
    if build_paragraphs is not None:
        cfg.build_paragraphs = build_paragraphs or None
    cfg.build_real_encoders = build_real_encoders
    if passages is not None:
        cfg.passages = passages
    results = run_bench(cfg, settings, lambda msg: typer.echo(msg, err=True))
    target = doc or (None if quick or only else Path("docs/PERFORMANCE.md"))
    if target is not None:
        command = "qa " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        bench_report.write(target, results, command)
        typer.echo(f"wrote {target}", err=True)
    typer.echo(json.dumps(results, ensure_ascii=False))
