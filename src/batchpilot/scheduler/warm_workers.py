"""Warm worker processes: each run's worker is forked from a process that has the
engine imported already.

A fresh ``python -m batchpilot.scheduler.worker RUN_ID`` spends 1.2 to 2.6 s
importing the engine, the steps, SQLAlchemy and pyarrow before it drives its
run. :class:`ForkServerLauncher` starts the standard library's multiprocessing
fork server once, eagerly, with those modules imported (``preload``), and each
worker is a fork of it, driving its run tens of milliseconds after it was asked
for. The fork server is a process of its own that only imports and forks, so
the caller's threads (API, scheduler) are never forked.

Each worker (:func:`_drive_in_fork`) first makes itself a session leader (its
own process group: a stop reaches it and the processes its steps started, and a
Ctrl-C in the caller's terminal does not), sends its output to the run's log
file, takes the caller's environment (the fork server kept the one it started
with), and drives its run with the caller's :class:`~batchpilot.settings.Settings`,
passed as an argument, so they win over any environment. It exits with the
codes of :mod:`batchpilot.scheduler.worker`; killed, its exit code is minus
the signal.

A worker killed for memory never takes the caller down. A fork server that
died is started again at the next :meth:`ForkServerLauncher.ensure_running`
(the supervisor calls it at every poll) or start. The workers it had forked
go on, but their exit codes die with it: they are followed by process id and
end with :data:`EXIT_LOST` (the store says how their runs ended).
"""

from __future__ import annotations

import ast
import atexit
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from collections.abc import Iterable, Mapping
from contextlib import suppress
from multiprocessing import forkserver
from multiprocessing.process import BaseProcess
from pathlib import Path

import psutil

from batchpilot.errors import WorkerStartError, first_line
from batchpilot.scheduler.worker import drive_run, stop_on_sigterm
from batchpilot.settings import Settings
from batchpilot.steps.registry import BUILTIN_STEPS

#: The exit code of a worker whose fork server died before it (the standard library's
#: answer when the fork server cannot report an exit code any more).
EXIT_LOST = 255
#: What every worker needs, imported once in the fork server: the worker (the engine, the
#: store, SQLAlchemy, pyarrow), the built-in steps (DuckDB, pandas) and the SQLite and
#: PostgreSQL drivers. A module that is not installed is skipped.
WORKER_PRELOAD: tuple[str, ...] = (
    "batchpilot.scheduler.worker",
    *sorted({target.partition(":")[0] for target in BUILTIN_STEPS.values()}),
    "sqlite3",
    "psycopg",
    "sqlalchemy.dialects.postgresql.psycopg",
)
#: Seconds between two looks at a worker whose fork server died (it is no child of ours),
#: and between two tries to start a worker while a dead fork server is replaced.
LOST_POLL_S = 0.05
#: Seconds a worker start is tried again while the fork server refuses (it is dying).
START_RETRY_S = 10.0


class WarmWorker:
    """A worker process forked by the fork server, running one run."""

    def __init__(self, process: BaseProcess) -> None:
        self.process = process
        assert process.pid is not None  # started
        self.pid: int = process.pid
        try:
            self._ps: psutil.Process | None = psutil.Process(self.pid)
        except psutil.Error:  # it ended already
            self._ps = None

    @property
    def sentinel(self) -> int | None:
        """A file descriptor readable once the fork server reports this worker's end (None
        once reported)."""
        return self.process.sentinel if self.process.exitcode is None else None

    def poll(self) -> int | None:
        """The exit code once the worker ended (minus the signal that killed it;
        :data:`EXIT_LOST` when its fork server died first), else None."""
        code = self.process.exitcode
        if code == EXIT_LOST and self._alive():
            return None  # the fork server died, not this worker: follow it by its pid
        return code

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the worker's process group (to the worker alone when it has
        not made its group yet); nothing when it has ended."""
        with suppress(ProcessLookupError, PermissionError):
            try:
                os.killpg(self.pid, signum)
            except ProcessLookupError:
                os.kill(self.pid, signum)  # forked, not a session leader yet

    def wait(self) -> int:
        """Block until the worker ended; its exit code (see :meth:`poll`)."""
        self.process.join()
        while (code := self.poll()) is None:
            time.sleep(LOST_POLL_S)
        return code

    def close(self) -> None:
        """Release the worker's file descriptors (once it ended)."""
        with suppress(ValueError):
            self.process.close()

    def _alive(self) -> bool:
        if self._ps is None:
            return False
        try:
            return self._ps.is_running() and self._ps.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def start_fork_server(preload: Iterable[str] = WORKER_PRELOAD) -> None:
    """Start this process's fork server now, importing ``preload`` (and the main script's
    imports) in the background; returns at once. ``serve`` calls it first thing, so the
    imports overlap its own start (the store, the catalog, the API) and its first run
    waits only for what is left of them. Starting it again is a no-op while it runs."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*preload, *main_script_imports()])
    forkserver.ensure_running()


class ForkServerLauncher:
    """Starts workers as forks of one warm fork server (see the module)."""

    def __init__(self, preload: Iterable[str] = WORKER_PRELOAD) -> None:
        self._context = multiprocessing.get_context("forkserver")
        start_fork_server(preload)  # now (unless started already), so the first run is warm

    def ensure_running(self) -> None:
        """Start the fork server unless it runs (again, when it died); returns at once,
        while it imports."""
        forkserver.ensure_running()

    def start(
        self,
        run_id: str,
        settings: Settings,
        log: Path,
        environment: Mapping[str, str],
        *,
        migrate: bool = True,
    ) -> WarmWorker:
        """Fork a worker driving ``run_id``, its output appended to ``log``; ``migrate=False``
        when the caller opened the store already (the worker skips the schema check). Blocks
        while the fork server imports (its first seconds). Raises :class:`WorkerStartError`
        when no worker can be forked (the fork server died and did not start again)."""
        args = (run_id, settings, str(log), dict(environment), migrate)
        deadline = time.monotonic() + START_RETRY_S
        while True:
            try:
                return self._start(run_id, args)
            except (OSError, EOFError) as exc:
                # the fork server died, or is dying (it refuses before it is reaped): once it
                # is gone, ensure_running starts another
                if time.monotonic() >= deadline:
                    raise WorkerStartError(run_id, first_line(exc)) from exc
            time.sleep(LOST_POLL_S)
            self.ensure_running()

    def _start(self, run_id: str, args: tuple[object, ...]) -> WarmWorker:
        process = self._context.Process(
            target=_drive_in_fork, args=args, name=f"batchpilot-worker-{run_id}"
        )
        process.start()
        return WarmWorker(process)


def wait_for_any(workers: Iterable[WarmWorker], timeout_s: float) -> None:
    """Block until one of ``workers`` may have ended, at most ``timeout_s`` seconds."""
    sentinels = [s for s in (w.sentinel for w in workers) if s is not None]
    if sentinels:
        multiprocessing.connection.wait(sentinels, timeout_s)
    else:
        time.sleep(timeout_s)


def main_script_imports() -> list[str]:
    """The modules the caller's main *script* imports at its top level, e.g.
    ``batchpilot.cli.app`` for the ``batchpilot`` console script.

    A fork runs that script again as ``__mp_main__`` before it calls the worker
    (Python 3.11's fork server never imports ``__main__`` itself: it looks for a
    ``main_path`` the preparation data names ``init_main_from_path``); with its imports
    in the fork server already, that costs dictionary look-ups, not a second import of
    the CLI. Nothing for ``python -m …``, whose ``__main__`` a fork leaves alone.
    """
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) is not None:
        return []
    path = getattr(main, "__file__", None)
    if not path:
        return []
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _drive_in_fork(
    run_id: str, settings: Settings, log: str, environment: dict[str, str], migrate: bool
) -> None:
    """The worker, in a fresh fork of the fork server (see the module)."""
    os.setsid()
    stop_on_sigterm()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(environment)
    code = drive_run(run_id, settings, migrate=migrate)
    sys.stdout.flush()
    sys.stderr.flush()
    # A fork ends with os._exit, which skips the exit hooks a fresh interpreter runs (the
    # last shipment of remote logs, pyarrow's S3 shutdown): run them here.
    atexit._run_exitfuncs()
    sys.exit(code)


__all__ = [
    "EXIT_LOST",
    "WORKER_PRELOAD",
    "ForkServerLauncher",
    "WarmWorker",
    "main_script_imports",
    "start_fork_server",
    "wait_for_any",
]
