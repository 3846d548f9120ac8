"""Run processes: drive queued runs in worker processes, at most N at once.

:class:`RunSupervisor` is shared by ``serve`` and ``backfill``: submit run
ids, call :meth:`~RunSupervisor.poll` now and then (it starts waiting runs
while fewer than ``max_runs`` run, and returns the ends it saw), and
:meth:`~RunSupervisor.stop` at the end. Each worker
(:mod:`batchpilot.scheduler.worker`) is a separate process in its own process
group, so a run that crashes or is killed for memory never takes the caller
down, and a Ctrl-C in the caller's terminal reaches only the caller. Workers
are forked from a warm fork server (:mod:`batchpilot.scheduler.warm_workers`),
started with the supervisor, so a run starts in tens of milliseconds; given a
``python``, they are fresh ``python -m batchpilot.scheduler.worker RUN_ID``
processes of that interpreter instead (a second or two of imports each). Each
worker's output is appended to ``<home>/serve/workers/<run id>.log``.
The supervisor does not read the store: what a run's end means is the
caller's business (``RunEnd.exit_code``, then the store).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from batchpilot.scheduler.warm_workers import ForkServerLauncher, WarmWorker, wait_for_any
from batchpilot.settings import Settings

DEFAULT_MAX_RUNS = 4
#: Seconds a worker has to stop after SIGTERM before it is killed.
STOP_GRACE_S = 20.0
WORKER_MODULE = "batchpilot.scheduler.worker"


@dataclass(frozen=True)
class RunEnd:
    """A worker that exited: its run and exit code (see :mod:`batchpilot.scheduler.worker`;
    negative: killed by that signal; 255: lost with the fork server that started it)."""

    run_id: str
    exit_code: int


class _Worker(Protocol):
    """A worker process as the supervisor follows it (warm or fresh)."""

    pid: int

    def poll(self) -> int | None: ...

    def signal_group(self, signum: int) -> None: ...

    def wait(self) -> int: ...

    def close(self) -> None: ...


@dataclass
class _FreshWorker:
    """A ``python -m batchpilot.scheduler.worker RUN_ID`` process."""

    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def signal_group(self, signum: int) -> None:
        with suppress(ProcessLookupError, PermissionError):  # it exited already
            os.killpg(self.process.pid, signum)

    def wait(self) -> int:
        return self.process.wait()

    def close(self) -> None:
        self.log.close()


def worker_environment(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a worker: ``base`` with the settings' home and state store."""
    env = dict(base)
    env["BATCHPILOT_HOME"] = str(settings.home)
    if settings.database_url:
        env["BATCHPILOT_DATABASE_URL"] = settings.database_url
    else:
        env.pop("BATCHPILOT_DATABASE_URL", None)
    return env


class RunSupervisor:
    """Runs submitted runs in worker processes, at most ``max_runs`` at once, in order."""

    def __init__(
        self,
        settings: Settings,
        *,
        max_runs: int = DEFAULT_MAX_RUNS,
        environment: Mapping[str, str] | None = None,
        python: str | None = None,
        store_migrated: bool = False,
    ) -> None:
        """``environment`` (default: this process's) is the workers' environment, with the
        settings' home and state store; ``python``: run each worker in a fresh process of
        that interpreter instead of forking it warm; ``store_migrated``: the caller opened
        the settings' state store (which brought its schema to the newest revision), so a
        forked worker skips that check. Starts the fork server (not waiting for its
        imports)."""
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, got {max_runs}")
        self.settings = settings
        self.max_runs = max_runs
        self.python = python
        self.store_migrated = store_migrated
        self._env = worker_environment(settings, os.environ if environment is None else environment)
        self._waiting: deque[str] = deque()
        self._running: dict[str, _Worker] = {}
        self.log_dir: Path = settings.home / "serve" / "workers"
        self._launcher = ForkServerLauncher() if python is None else None

    # -- what it holds --------------------------------------------------------------------

    @property
    def running(self) -> list[str]:
        """Runs whose worker is alive (as of the last poll)."""
        return list(self._running)

    @property
    def waiting(self) -> list[str]:
        """Runs submitted and not started yet, in order."""
        return list(self._waiting)

    def holds(self, run_id: str) -> bool:
        """True while ``run_id`` waits or runs here."""
        return run_id in self._running or run_id in self._waiting

    def pid_of(self, run_id: str) -> int | None:
        """The process id of the run's worker, while it runs."""
        worker = self._running.get(run_id)
        return worker.pid if worker else None

    # -- acting ---------------------------------------------------------------------------

    def submit(self, run_id: str) -> bool:
        """Queue a run to be driven; False (and nothing done) when it is held already."""
        if self.holds(run_id):
            return False
        self._waiting.append(run_id)
        return True

    def poll(self) -> list[RunEnd]:
        """Collect the workers that exited and start waiting runs into the free places;
        returns the ends seen, in the order found. A fork server that died is started
        again. Raises :class:`WorkerStartError` when a worker cannot be started (that run
        stays first in line)."""
        ends = self._collect()
        if self._launcher is not None:
            self._launcher.ensure_running()
        while self._waiting and len(self._running) < self.max_runs:
            run_id = self._waiting.popleft()
            try:
                self._start(run_id)
            except BaseException:
                self._waiting.appendleft(run_id)
                raise
        return ends

    def wait_for_end(self, timeout_s: float) -> None:
        """Block until a worker may have exited, at most ``timeout_s`` seconds (the whole
        time with fresh-process workers, which give nothing to wait on)."""
        warm = [w for w in self._running.values() if isinstance(w, WarmWorker)]
        if warm and len(warm) == len(self._running):
            wait_for_any(warm, timeout_s)
        else:
            time.sleep(timeout_s)

    def stop(self, *, grace_s: float = STOP_GRACE_S) -> list[RunEnd]:
        """Forget waiting runs, send SIGTERM to every worker's process group (the engine
        leaves their runs resumable), wait up to ``grace_s``, then SIGKILL what is left."""
        self._waiting.clear()
        for worker in self._running.values():
            worker.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
            ends = self._collect()
            if not self._running:
                return ends
        for worker in self._running.values():
            worker.signal_group(signal.SIGKILL)
            worker.wait()
        return self._collect()

    def _collect(self) -> list[RunEnd]:
        ends = []
        for run_id, worker in list(self._running.items()):
            code = worker.poll()
            if code is not None:
                worker.close()
                del self._running[run_id]
                ends.append(RunEnd(run_id, code))
        return ends

    def _start(self, run_id: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{run_id}.log"
        if self._launcher is not None:
            self._running[run_id] = self._launcher.start(
                run_id, self.settings, log, self._env, migrate=not self.store_migrated
            )
            return
        assert self.python is not None
        output = log.open("ab")
        process = subprocess.Popen(
            [self.python, "-m", WORKER_MODULE, run_id],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals reach it and its children
        )
        self._running[run_id] = _FreshWorker(process, output)


__all__ = [
    "DEFAULT_MAX_RUNS",
    "STOP_GRACE_S",
    "RunEnd",
    "RunSupervisor",
    "worker_environment",
]
