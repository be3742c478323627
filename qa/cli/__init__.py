"""The ``qa`` command. Options mirror Settings fields (each also read from its QA_*
variable) and flow into Settings; input is checked before any model or index is loaded, and
errors are translated once, in ``main``. Heavy libraries are imported inside the commands,
so ``qa --help`` stays instant."""

from __future__ import annotations

import sys

import typer

from qa.cli.app import app
from qa.errors import ConfigError, QAError

# Importing the command modules registers their commands on ``app``.
from qa.cli import ask, documents, measure, ops  # noqa: E402,F401  isort: skip


def exit_code(exc: QAError) -> int:
    """2 for a misconfiguration (like a usage error), 1 for any other refusal."""
    return 2 if isinstance(exc, ConfigError) else 1


def main(argv: list[str] | None = None) -> None:
    """Run the command line. Usage errors are click's (exit 2); a QAError from any command
    becomes one red line on stderr, never a traceback."""
    try:
        app(args=argv)
    except QAError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        sys.exit(exit_code(exc))


__all__ = ["app", "main"]
