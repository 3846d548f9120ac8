"""The one place the CLI turns batchpilot's errors into messages and exit codes.

The first entry of :data:`EXIT_CODE_BY_ERROR` that the error is an instance
of decides; an error it does not list gets the command's ``otherwise`` code:
``EXIT_RUN_FAILED`` while a run is driven or followed (something went wrong
in the run), ``EXIT_INVALID`` elsewhere (settings, the store, arguments).
Every message is one line per problem, ``error: …``, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from batchpilot.airflow.errors import AirflowError, AirflowRunNotFollowed
from batchpilot.cli.output import EXIT_INVALID, EXIT_RUN_FAILED, err
from batchpilot.engine import UnknownExecutor
from batchpilot.errors import (
    AlertNotFound,
    BatchpilotError,
    ConnectionError,
    RetentionError,
    RunInterrupted,
    RunNotFound,
    RunStateError,
    SpecError,
    SpecErrors,
    TokenError,
)

EXIT_CODE_BY_ERROR: tuple[tuple[type[BatchpilotError], int], ...] = (
    (RunInterrupted, EXIT_RUN_FAILED),  # the message says how to resume
    (AirflowRunNotFollowed, EXIT_RUN_FAILED),  # the run goes on in Airflow; we stopped looking
    (RetentionError, EXIT_RUN_FAILED),  # files could not be deleted: clean again once fixed
    (SpecError, EXIT_INVALID),
    (RunNotFound, EXIT_INVALID),
    (AlertNotFound, EXIT_INVALID),
    (RunStateError, EXIT_INVALID),
    (ConnectionError, EXIT_INVALID),
    (UnknownExecutor, EXIT_INVALID),
    (AirflowError, EXIT_INVALID),
    (TokenError, EXIT_INVALID),
)


def exit_code_for(exc: BatchpilotError, otherwise: int = EXIT_INVALID) -> int:
    """The exit code ``exc`` ends the command with."""
    for kind, code in EXIT_CODE_BY_ERROR:
        if isinstance(exc, kind):
            return code
    return otherwise


def print_error(exc: BatchpilotError) -> None:
    """Print ``error: …`` on stderr, one line for each problem a :class:`SpecErrors` lists."""
    for problem in exc.errors if isinstance(exc, SpecErrors) else [exc]:
        err.print(f"error: {problem}", markup=False)


def exit_for(exc: BatchpilotError, otherwise: int = EXIT_INVALID) -> NoReturn:
    """Print ``exc`` and end the command with its exit code."""
    print_error(exc)
    raise typer.Exit(exit_code_for(exc, otherwise))


@contextmanager
def exit_codes(otherwise: int = EXIT_INVALID) -> Iterator[None]:
    """Turn a :class:`BatchpilotError` raised inside into its message and exit code."""
    try:
        yield
    except BatchpilotError as exc:
        exit_for(exc, otherwise)
