"""The Typer app and the options several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import typer.core

from qa.config import Settings, load_settings

# Typer 0.29 prints a positional argument as "QUESTION <str>": the Python type is noise to a
# reader of the help, and the argument's help text already says what to give.
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]

# Plain click help: paragraphs re-flowed to the terminal, no Python types in the listing.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Cited semantic search over Chinese policy documents.\n\n"
                       "Example: qa index && qa ask \"武汉有多少名院士?\"")

CorpusOpt = Annotated[Path | None, typer.Option(
    "--corpus", envvar="QA_CORPUS_DIR", show_default="corpus", metavar="DIR",
    help="Folder of documents to index.")]
IndexOpt = Annotated[Path | None, typer.Option(
    "--index", envvar="QA_INDEX_DIR", show_default="index", metavar="DIR",
    help="Index folder.")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", envvar="QA_MODEL", metavar="ID_OR_PATH",
    help="A sentence-transformers model id or local folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of text.")]


def settings_from(**options: object) -> Settings:
    """Settings from the environment with the command's options on top (None: not given)."""
    return load_settings(**options)
