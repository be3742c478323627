"""``qa index``, ``qa serve`` and ``qa mcp``: building the index and serving it."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from qa.cli.app import CorpusOpt, IndexOpt, JsonOpt, ModelOpt, app, settings_from
from qa.config import Settings


def run_index(settings: Settings, force: bool = False, quiet: bool = False) -> Any:
    """Build or update the index, with a progress bar on stderr; returns the BuildReport."""
    from tqdm import tqdm

    from qa.index.build import build_index
    from qa.ingest.readers import Limits
    from qa.service.status import StatusBook
    from qa.service.wiring import make_embedder, make_vector_store
    from qa.service.writes import index_pending

    if not quiet:
        name = settings.model if settings.embedder != "hashing" else "hashing fake"
        typer.echo(f"loading the embedder ({name}) ...", err=True)
    embedder = make_embedder(settings)
    bar: list[tqdm] = []

    def progress(stage: str, done: int, total: int) -> None:
        if quiet:
            return
        if not bar:
            # Created before the first batch (done == 0), so the rate starts from real time.
            bar.append(tqdm(total=total, desc="embedding passages and sentences",
                            unit="text", file=sys.stderr, smoothing=0.1))
        bar[0].total = total  # the build streams: the total grows as documents are cut
        bar[0].update(done - bar[0].n)

    embed_passages = _ray_embed(settings, embedder) if settings.ray_address else None
    limits = Limits(max_bytes=settings.max_file_mb * 2**20, max_pages=settings.max_pages)
    try:
        # Through index_pending: GET /documents then shows what this build skipped, and why.
        report = index_pending(StatusBook(settings.index_dir), lambda: build_index(
            settings.corpus_dir, settings.index_dir, embedder,
            embed_context=settings.embed_context, batch_size=settings.batch_size,
            sentence_vectors=settings.sentence_vectors,
            hnsw_threshold=settings.hnsw_threshold, progress=progress, force=force,
            vector_store=make_vector_store(settings), embed_passages=embed_passages,
            limits=limits))
    finally:
        if bar:
            bar[0].close()
        if embed_passages is not None:
            embed_passages.close()
    if not quiet:
        for note in report.notes:
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
        typer.echo(f"index {report.generation}: {report.summary()}", err=True)
        for label, names in (("added", report.added), ("changed", report.changed),
                             ("removed", report.removed)):
            if names:
                typer.echo(f"  {label}: {', '.join(names)}", err=True)
    return report


def _ray_embed(settings: Settings, embedder: Any) -> Any:
    """A pool of encoder actors on the configured Ray cluster, each building the same
    embedder from these settings (less the secrets, which workers do not need)."""
    from functools import partial

    from qa.index.distributed import RayEmbed
    from qa.service.wiring import make_embedder

    threads = settings.threads or 1
    # Workers embed the first encoder's passages; the second encoder's (qa.index.second)
    # are embedded by the build itself.
    worker = settings.model_copy(update={"threads": threads, "milvus_token": None,
                                         "llm_api_key": None, "second_encoder": "none"})
    return RayEmbed(settings.ray_address or "local", partial(make_embedder, worker),
                    embedder.fingerprint, workers=settings.ray_workers,
                    cpus_per_worker=threads, batch_size=settings.batch_size)


@app.command()
def index(corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None,
          force: Annotated[bool, typer.Option(help="Re-embed every document.")] = False,
          ray: Annotated[str | None, typer.Option(
              "--ray", envvar="QA_RAY_ADDRESS", metavar="ADDRESS",
              help="Embed on a Ray cluster (ray://host:10001, auto) or 'local' to start "
                   "one on this machine.")] = None,
          ray_workers: Annotated[int | None, typer.Option(
              envvar="QA_RAY_WORKERS", show_default="2", metavar="N",
              help="Encoder actors on Ray, QA_THREADS (default 1) CPUs each.")] = None,
          verify: Annotated[bool, typer.Option(
              "--verify", help="Only check every file of the live generation against its "
                               "checksums (exit 1 naming a damaged file); build nothing.")]
          = False,
          as_json: JsonOpt = False) -> None:
    """Build or update the index from the corpus folder. Only new or changed documents are
    embedded again; removed ones disappear; a failed build leaves the previous index in use;
    a damaged index is rebuilt. With nothing changed, nothing is written.

    Example: qa index --corpus corpus --index index --ray local --ray-workers 2
    """
    if verify:
        verify_index(settings_from(index_dir=index), as_json)
        return
    report = run_index(settings_from(corpus_dir=corpus, index_dir=index, model=model,
                                     ray_address=ray, ray_workers=ray_workers), force=force)
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps(asdict(report), ensure_ascii=False, indent=2))


def verify_index(settings: Settings, as_json: bool) -> None:
    """Hash every byte of the live generation against its manifest (``qa index --verify``)."""
    import time

    from qa.errors import IndexNotReady
    from qa.index.integrity import verify_files
    from qa.index.manifest import current_generation, read_manifest

    gen = current_generation(settings.index_dir)
    if gen is None:
        raise IndexNotReady(f"no index in {settings.index_dir}: build it with `qa index`")
    started = time.perf_counter()
    manifest = read_manifest(gen)
    if manifest.get("files") is None:
        raise IndexNotReady(f"generation {gen.name} records no checksums (built by an older "
                            "qa); `qa index` rebuilds it with them")
    hashed = verify_files(gen, manifest, full=True)
    seconds = time.perf_counter() - started
    if as_json:
        typer.echo(json.dumps({"generation": gen.name, "files": len(manifest["files"]),
                               "bytes": hashed, "seconds": round(seconds, 3), "ok": True}))
    else:
        typer.echo(f"ok: generation {gen.name}, {len(manifest['files'])} files, "
                   f"{hashed / 2**20:.1f} MiB verified in {seconds:.1f}s", err=True)


@app.command()
def serve(host: Annotated[str | None, typer.Option(
              envvar="QA_HOST", show_default="127.0.0.1", metavar="ADDRESS",
              help="Address to listen on (0.0.0.0: every interface).")] = None,
          port: Annotated[int | None, typer.Option(envvar="QA_PORT", show_default="8000", metavar="PORT",
                                                   help="Port to listen on.")] = None,
          corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None,
          reindex: Annotated[bool, typer.Option(help="Update the index before serving.")]
          = False) -> None:
    """Serve the HTTP API, the web page at / and MCP at /mcp (API docs at /docs); builds the
    index first if there is none.

    Example: qa serve --host 127.0.0.1 --port 8000
    """
    import uvicorn

    from qa.api import create_app
    from qa.api.server import server_config
    settings = settings_from(host=host, port=port, corpus_dir=corpus, index_dir=index,
                             model=model)
    if reindex or _needs_build(settings):
        run_index(settings)
    uvicorn.Server(server_config(create_app(settings), settings)).run()


def _needs_build(settings: Settings) -> bool:
    """No live generation where the service reads it: the index folder, or (Milvus) the
    registry, so that a replica with no index folder starts without building."""
    if settings.vector_backend == "milvus":
        from qa.index.milvus_registry import needs_build as published_needs_build
        from qa.service.wiring import make_vector_store

        return published_needs_build(make_vector_store(settings))
    from qa.index.manifest import needs_build

    return needs_build(settings.index_dir)


@app.command("milvus-server")
def milvus_server(
        data_dir: Annotated[str, typer.Option(metavar="FOLDER", help="Folder of the Milvus "
                                              "data (created if missing; one server per folder).")],
        host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")]
        = "127.0.0.1",
        port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on (0: a free "
                                          "one).")] = 19530,
) -> None:
    """Run milvus-lite as one Milvus server that `qa index` and several `qa serve` replicas
    share, on one machine (a Milvus server or cluster does this in production).

    Example: qa milvus-server --data-dir milvus-data --port 19530, then
    QA_VECTOR_BACKEND=milvus QA_MILVUS_URI=http://127.0.0.1:19530 qa serve --port 8000
    """
    from pathlib import Path

    from qa.index.vectors.milvus import serve_lite

    def ready(bound: int) -> None:
        typer.echo(f"Milvus (milvus-lite) listening on http://{host}:{bound} "
                   f"(data in {data_dir})", err=True)

    serve_lite(Path(data_dir), host, port, on_ready=ready)


@app.command("mcp")
def mcp_stdio(corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None) -> None:
    """Serve the search tools over MCP on stdin/stdout, for chat applications.

    Example (an "mcpServers" entry): {"command": "qa", "args": ["mcp", "--index", "index"]}
    """
    from qa.mcp.server import run_stdio

    run_stdio(settings_from(corpus_dir=corpus, index_dir=index, model=model))
