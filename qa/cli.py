"""The ``qa`` command. Options mirror Settings fields and accept QA_* variables; heavy
libraries are imported inside the commands, so ``qa --help`` stays instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qa.config import Settings
from qa.errors import QAError

if TYPE_CHECKING:
    from qa.index.build import BuildReport

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cited semantic search over Chinese policy documents.\n\n"
                       "Example: qa index && qa ask \"武汉有多少名院士?\"")

CorpusOpt = Annotated[Path | None, typer.Option("--corpus", envvar="QA_CORPUS_DIR",
                                                  help="Folder of .txt/.md documents.")]
IndexOpt = Annotated[Path | None, typer.Option("--index", envvar="QA_INDEX_DIR",
                                                 help="Index folder.")]
ModelOpt = Annotated[str | None, typer.Option("--model", envvar="QA_MODEL",
                                                help="sentence-transformers id or local path.")]


def _settings(corpus: Path | None = None, index: Path | None = None,
              model: str | None = None) -> Settings:
    overrides = {k: v for k, v in (("corpus_dir", corpus), ("index_dir", index),
                                   ("model", model)) if v is not None}
    return Settings(**overrides)


def _fail(exc: QAError) -> None:
    typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def run_index(settings: Settings, force: bool = False, quiet: bool = False) -> BuildReport:
    from tqdm import tqdm

    from qa.index.build import build_index
    from qa.service.status import StatusBook
    from qa.service.wiring import make_embedder, make_vector_store
    from qa.service.writes import index_pending

    if not quiet:
        typer.echo("loading the embedder "
                   f"({settings.model if settings.embedder != 'hashing' else 'hashing fake'}) ...",
                   err=True)
    embedder = make_embedder(settings)
    bar: list[tqdm] = []

    def progress(stage: str, done: int, total: int) -> None:
        if quiet:
            return
        if not bar:
            bar.append(tqdm(total=total, desc="embedding passages", unit="passage",
                            file=sys.stderr))
        bar[0].n = done
        bar[0].refresh()

    try:
        # Through index_pending: GET /documents then shows what this build skipped, and why.
        report = index_pending(StatusBook(settings.index_dir), lambda: build_index(
            settings.corpus_dir, settings.index_dir, embedder,
            embed_context=settings.embed_context, batch_size=settings.batch_size,
            hnsw_threshold=settings.hnsw_threshold, progress=progress, force=force,
            vector_store=make_vector_store(settings)))
    finally:
        if bar:
            bar[0].close()
    if not quiet:
        typer.echo(f"index {report.generation}: {report.summary()}", err=True)
        for name, reason in sorted(report.failed.items()):
            typer.secho(f"skipped {name}: {reason}", fg=typer.colors.YELLOW, err=True)
    return report


@app.command()
def index(corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None,
          force: Annotated[bool, typer.Option(help="Re-embed every document.")] = False) -> None:
    """Build or update the index from the corpus folder (only new or changed documents are
    embedded again; removed ones disappear).

    Example: qa index --corpus corpus --index index
    """
    try:
        run_index(_settings(corpus, index, model), force=force)
    except QAError as exc:
        _fail(exc)


MetaOpt = Annotated[str | None, typer.Option(help="Stored in the document's sidecar.")]


@app.command()
def add(files: Annotated[list[Path], typer.Argument(help="Files to add to the corpus.")],
        title: MetaOpt = None, date: Annotated[str | None, typer.Option(
            help="YYYY-MM-DD (or YYYY-MM, YYYY).")] = None,
        source: MetaOpt = None,
        doc_type: Annotated[str | None, typer.Option("--type", help="Document type.")] = None,
        replace: Annotated[bool, typer.Option(
            help="Replace a document with the same doc_id.")] = False,
        corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None) -> None:
    """Copy documents into the corpus folder and index them: the same code path as
    POST /documents. The doc_id is the file name without its extension, made safe.

    Example: qa add 通知.txt --title "关于加强城市治理的通知" --date 2024-05-01
    """
    from qa.service.writes import add_document

    settings = _settings(corpus, index, model)
    meta = {"title": title, "date": date, "source": source, "type": doc_type}
    added: list[str] = []
    problems = 0
    for path in files:
        try:
            with open(path, "rb") as fh:
                added.append(add_document(settings, path.name, fh, meta, replace=replace).doc_id)
        except QAError as exc:
            typer.secho(f"error: {path}: {exc.message}", fg=typer.colors.RED, err=True)
            problems += 1
        except OSError as exc:
            typer.secho(f"error: {path}: {exc.strerror}", fg=typer.colors.RED, err=True)
            problems += 1
    if added:
        problems += _index_and_report(settings, added, "added")
    if problems:
        raise typer.Exit(1)


@app.command()
def remove(doc_ids: Annotated[list[str], typer.Argument(help="doc_ids to remove.")],
           corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None) -> None:
    """Delete documents from the corpus folder and the index: the same code path as
    DELETE /documents/{doc_id}.

    Example: qa remove wuhan-9th-plenary-digest-2020-06-28
    """
    from qa.service.writes import remove_document

    settings = _settings(corpus, index, model)
    removed: list[str] = []
    problems = 0
    for doc_id in doc_ids:
        try:
            remove_document(settings, doc_id)
            removed.append(doc_id)
        except QAError as exc:
            typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
            problems += 1
    if removed:
        problems += _index_and_report(settings, removed, "removed")
    if problems:
        raise typer.Exit(1)


def _index_and_report(settings: Settings, doc_ids: list[str], done: str) -> int:
    """Index the queued writes; print each document's outcome; the number that failed."""
    try:
        report = run_index(settings)
    except QAError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        return len(doc_ids)
    failed = {Path(name).stem: reason for name, reason in report.failed.items()}
    for doc_id in doc_ids:
        if doc_id in failed:
            typer.secho(f"failed {doc_id}: {failed[doc_id]}", fg=typer.colors.RED, err=True)
        else:
            typer.echo(f"{done} {doc_id}")
    return sum(d in failed for d in doc_ids)


@app.command()
def ask(question: Annotated[str, typer.Argument(help="The question, Chinese or English.")],
        top_k: Annotated[int, typer.Option("--top-k", "-k", help="Passages to show.")] = 5,
        mode: Annotated[str, typer.Option(help="auto, hybrid, dense or lexical.")] = "auto",
        as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
        doc_id: Annotated[list[str] | None, typer.Option("--doc", help="Only this doc.")] = None,
        index: IndexOpt = None, model: ModelOpt = None) -> None:
    """Ask a question and print ranked, cited passages.

    Example: qa ask "What is the R&D spending target for 2025?" --top-k 3
    """
    from qa.api.schemas import SearchResponse
    from qa.index.load import open_index
    from qa.retrieve.search import Searcher
    from qa.service.wiring import make_embedder, make_vector_store

    try:
        settings = _settings(index=index, model=model)
        embedder = make_embedder(settings)
        searcher = Searcher(open_index(settings.index_dir, embedder,
                                       make_vector_store(settings)), embedder)
        result = searcher.search(question, top_k, mode, doc_id)
    except QAError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(SearchResponse.of(result).model_dump(), ensure_ascii=False,
                              indent=2))
        return
    typer.echo(f"{len(result.hits)} passages · mode {result.mode} · {result.took_ms:.0f} ms · "
               f"confidence {result.confidence:.2f}"
               + ("" if result.answerable else " · the corpus probably does not cover this"))
    for hit in result.hits:
        c = hit.chunk
        typer.secho(f"\n[{hit.rank}] {hit.citation}  (score {hit.score:.3f})", bold=True)
        if c.section:
            typer.echo("    " + " > ".join(c.section))
        typer.echo(f"    chars {c.char_start}-{c.char_end} of {c.doc_id}")
        typer.echo("    " + c.clean_text)


@app.command()
def serve(host: Annotated[str, typer.Option(envvar="QA_HOST")] = "127.0.0.1",
          port: Annotated[int, typer.Option(envvar="QA_PORT")] = 8000,
          corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None,
          reindex: Annotated[bool, typer.Option(help="Update the index before serving.")]
          = False) -> None:
    """Serve the HTTP API (docs at /docs); builds the index first if there is none.

    Example: qa serve --host 127.0.0.1 --port 8000
    """
    import uvicorn

    from qa.api import create_app
    from qa.index.manifest import current_generation

    settings = _settings(corpus, index, model)
    try:
        if reindex or current_generation(settings.index_dir) is None:
            run_index(settings)
    except QAError as exc:
        _fail(exc)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command("mcp")
def mcp_stdio(corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None) -> None:
    """Serve the search tools over MCP on stdin/stdout, for chat applications.

    Example (an "mcpServers" entry): {"command": "qa", "args": ["mcp", "--index", "index"]}
    """
    from qa.mcp.server import run_stdio

    run_stdio(_settings(corpus, index, model))


@app.command("eval")
def eval_(
    benchmark: Annotated[list[str] | None, typer.Option(
        "--benchmark", "-b", help="xquad, cmrc, corpus (repeatable; default: all three).")] = None,
    squad: Annotated[Path | None, typer.Option(help="Any SQuAD-format file to evaluate.")] = None,
    questions: Annotated[Path | None, typer.Option(
        help="With --squad: the same question ids in another language.")] = None,
    data_dir: Annotated[Path, typer.Option(envvar="QA_EVAL_DATA",
                                           help="Folder with xquad/ and cmrc2018/.")]
    = Path("../shared/data"),
    questions_dir: Annotated[Path, typer.Option(help="Own question set folder.")]
    = Path("tests/data"),
    mode: Annotated[list[str] | None, typer.Option(
        "--mode", "-m", help="Modes to measure (default: all four).")] = None,
    limit: Annotated[int | None, typer.Option(help="At most N questions per slice.")] = None,
    json_out: Annotated[str | None, typer.Option(
        "--json", help="Write the full figures as JSON to this file ('-' for stdout).")] = None,
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
    from qa.retrieve.search import MODES
    from qa.service.wiring import make_embedder

    settings = _settings(corpus=corpus, model=model)
    try:
        embedder = make_embedder(settings)
        benches = []
        if squad is not None:
            extra = [(f"{squad.stem}<-{questions.stem}", questions)] if questions else []
            benches.append(load_squad(squad, extra, limit=limit))
        for name in benchmark or ([] if squad else list(BENCHMARKS)):
            benches.append(named_benchmark(name, data_dir, settings.corpus_dir, questions_dir,
                                           limit))
        results = []
        for bench in benches:
            typer.echo(f"evaluating {bench.name} ...", err=True)
            results.append(evaluate(bench, embedder, modes=mode or list(MODES),
                                    embed_context=settings.embed_context,
                                    batch_size=settings.batch_size))
    except QAError as exc:
        _fail(exc)
        return
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
    data_dir: Annotated[Path, typer.Option(envvar="QA_EVAL_DATA",
                                           help="Folder with xquad/ and cmrc2018/.")]
    = Path("../shared/data"),
    doc: Annotated[Path | None, typer.Option(
        help="Markdown to write the tables into (default: docs/PERFORMANCE.md, not with "
             "--quick).")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", help="Encoder backends to compare (repeatable).")] = None,
    model: ModelOpt = None,
) -> None:
    """Measure encoder backends, indexing, HTTP latency, memory and retrieval quality side by
    side in one run; the last stdout line is one JSON object (docs/PERFORMANCE.md).

    Example: qa bench --quick
    """
    import shlex

    from qa.evaluation import bench_report
    from qa.evaluation.bench import BenchConfig, run_bench

    settings = _settings(model=model)
    if not (data_dir / "cmrc2018").is_dir() or not (data_dir / "xquad").is_dir():
        _fail(QAError(f"benchmark data not found in {data_dir} (set --data-dir)"))
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
                          scale_n=None)
    if backend:
        cfg.backends = [b for b in backend if b != "torch"]
        cfg.quality_backends = list(dict.fromkeys(["torch", *backend]))
    try:
        results = run_bench(cfg, settings, lambda msg: typer.echo(msg, err=True))
    except QAError as exc:
        _fail(exc)
        return
    target = doc or (None if quick else Path("docs/PERFORMANCE.md"))
    if target is not None:
        command = "qa " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        bench_report.write(target, results, command)
        typer.echo(f"wrote {target}", err=True)
    typer.echo(json.dumps(results, ensure_ascii=False))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
