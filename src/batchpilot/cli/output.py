"""The CLI's output: its two consoles, ``--output``, JSON printing, results, and ``fail``.

Exit codes: 0 success, 1 the run failed (or was cancelled, or could not be
followed to its end), 2 invalid input (a bad pipeline or argument, an
unknown run, a state that does not allow the action, an unusable Airflow).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from batchpilot.cli.render import render_run
from batchpilot.engine import RunResult

EXIT_OK, EXIT_RUN_FAILED, EXIT_INVALID = 0, 1, 2

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(StrEnum):
    """What ``--output`` prints: tables and lines for people, or JSON for programs."""

    text = "text"
    json = "json"


OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="text (default) or json")
]


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr and go on."""
    err.print(f"warning: {message}", markup=False)


def print_json(value: Any) -> None:
    """Write ``value`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def print_result(result: RunResult, output: OutputFormat) -> None:
    """Print a run's status and tasks as a table, or as the JSON of ``runs show``."""
    if output is OutputFormat.json:
        print_json(result.to_dict())
    else:
        render_run(out, result)
