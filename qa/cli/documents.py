"""``qa add`` and ``qa remove``: the same service functions as POST and DELETE /documents,
then an index build in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qa.cli.app import CorpusOpt, IndexOpt, ModelOpt, app, settings_from
from qa.cli.ops import run_index
from qa.config import Settings
from qa.errors import QAError

MetaOpt = Annotated[str | None, typer.Option(metavar="TEXT",
                                             help="Stored in the document's sidecar.")]


@app.command()
def add(files: Annotated[list[Path], typer.Argument(metavar="FILE...",
                                                    help="Files to add to the corpus.")],
        title: MetaOpt = None,
        date: Annotated[str | None, typer.Option(metavar="DATE",
                                                 help="YYYY-MM-DD (or YYYY-MM, YYYY).")] = None,
        source: MetaOpt = None,
        doc_type: Annotated[str | None, typer.Option("--type", metavar="TEXT",
                                                     help="Document type.")] = None,
        replace: Annotated[bool, typer.Option(
            help="Replace a document with the same doc_id.")] = False,
        corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None) -> None:
    """Copy documents into the corpus folder and index them: the same code path as
    POST /documents. The doc_id is the file name without its extension, made safe.

    Example: qa add 通知.pdf --title "关于加强城市治理的通知" --date 2024-05-01
    """
    from qa.service.writes import add_document

    settings = settings_from(corpus_dir=corpus, index_dir=index, model=model)
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
def remove(doc_ids: Annotated[list[str], typer.Argument(metavar="DOC_ID...",
                                                        help="doc_ids to remove.")],
           corpus: CorpusOpt = None, index: IndexOpt = None, model: ModelOpt = None) -> None:
    """Delete documents from the corpus folder and the index: the same code path as
    DELETE /documents/{doc_id}.

    Example: qa remove wuhan-9th-plenary-digest-2020-06-28
    """
    from qa.service.writes import remove_document

    settings = settings_from(corpus_dir=corpus, index_dir=index, model=model)
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
