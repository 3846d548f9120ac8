"""A worker process: drives one existing run to its end, then exits.

:class:`~batchpilot.scheduler.supervisor.RunSupervisor` forks its workers from
a warm fork server (:mod:`batchpilot.scheduler.warm_workers`), each calling
:func:`drive_run` with the supervisor's settings. ``python -m
batchpilot.scheduler.worker RUN_ID`` does the same in a fresh interpreter,
with its settings read from the ``BATCHPILOT_*`` environment. Either way the
run is driven by ``RunService.execute``, and SIGTERM stops it resumably.

Exit codes: 0 the run succeeded, 1 it failed or was cancelled, 3 it was
interrupted (SIGTERM), 4 another process drives it, 2 it could not be started
(the run is then recorded ``failed`` with the reason, never left ``running``),
5 it executes elsewhere (Airflow) and following it failed: the run is recorded
``unknown`` with the reason, and ``serve`` follows it again later. A run that
executes elsewhere and whose worker gets SIGTERM stays as it was (3): it goes on
there, and ``serve`` follows it again when it starts.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from batchpilot.engine import RunService
from batchpilot.engine.executors import LOCAL, Executors
from batchpilot.errors import (
    BatchpilotError,
    RunInterrupted,
    RunNotFollowed,
    RunStateError,
    first_line,
)
from batchpilot.settings import Settings
from batchpilot.states import RunStatus
from batchpilot.store import RunStore

EXIT_SUCCESS, EXIT_FAILED, EXIT_NOT_STARTED, EXIT_INTERRUPTED, EXIT_TAKEN = 0, 1, 2, 3, 4
EXIT_FOLLOW_LOST = 5


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_worker(run_id: str, settings: Settings, *, migrate: bool = True) -> int:
    """Drive run ``run_id`` to its end; returns the worker's exit code (see the module).

    ``migrate=False`` skips the store's schema check: the caller opened the same store
    (``serve`` and ``backfill`` migrate it before they start workers)."""
    store = RunStore.for_home(settings.home, settings.database_url, migrate=migrate)
    try:
        service = RunService(settings=settings, store=store, executors=_executors(store, run_id))
        result = service.execute(run_id)
    except RunInterrupted:
        return EXIT_INTERRUPTED
    except RunNotFollowed as exc:
        print(f"worker: {exc}", file=sys.stderr)
        if not exc.lost:
            return EXIT_INTERRUPTED  # it goes on elsewhere; serve follows it again at start
        _record_lost(store, run_id, first_line(exc))
        return EXIT_FOLLOW_LOST
    except RunStateError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return EXIT_TAKEN
    except BatchpilotError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        _record_not_started(store, run_id, first_line(exc))
        return EXIT_NOT_STARTED
    finally:
        store.dispose()
    return EXIT_SUCCESS if result.status is RunStatus.SUCCESS else EXIT_FAILED


def _executors(store: RunStore, run_id: str) -> Executors | None:
    """Every executor for a run queued for a remote one (``airflow``); None (this machine
    only) for a local run, whose worker need not import the Airflow client to start."""
    if store.get_run(run_id).executor == LOCAL:
        return None
    from batchpilot.executors import default_executors

    return default_executors()


def _record_not_started(store: RunStore, run_id: str, reason: str) -> None:
    """A run its worker could not start ends ``failed`` with the reason (if nobody owns it)."""
    try:
        run = store.get_run(run_id)
        if run.owner is None and not run.status.is_terminal():
            store.set_run_status(run_id, RunStatus.FAILED, error=f"could not start: {reason}")
    except BatchpilotError:
        pass  # the store is unreachable: serve's next start finds the run and acts


def _record_lost(store: RunStore, run_id: str, reason: str) -> None:
    """A run executing elsewhere that its worker lost track of is recorded ``unknown`` with
    the reason (not ``failed``: it may go on well there) until it is followed again."""
    try:
        if not store.get_run(run_id).status.is_terminal():
            store.set_run_status(
                run_id,
                RunStatus.UNKNOWN,
                error=f"{reason}; serve follows it again within a few minutes",
            )
    except BatchpilotError:
        pass  # the store is unreachable: serve's next start finds the run and follows it


def stop_on_sigterm() -> None:
    """Make SIGTERM raise ``KeyboardInterrupt`` in this (the main) thread, which the engine
    turns into a resumable stop."""
    signal.signal(signal.SIGTERM, _interrupt)


def drive_run(run_id: str, settings: Settings, *, migrate: bool = True) -> int:
    """:func:`run_worker` in a worker process whose SIGTERM handler is
    :func:`stop_on_sigterm`'s: an interrupt anywhere is :data:`EXIT_INTERRUPTED`."""
    try:
        return run_worker(run_id, settings, migrate=migrate)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m batchpilot.scheduler.worker RUN_ID``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m batchpilot.scheduler.worker RUN_ID", file=sys.stderr)
        return EXIT_NOT_STARTED
    stop_on_sigterm()
    try:
        settings = Settings.from_env()
    except BatchpilotError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    return drive_run(args[0], settings)


if __name__ == "__main__":
    sys.exit(main())
