"""Run processes: drive queued runs in worker processes, at most N at once.

:class:`RunSupervisor` is shared by ``serve`` and ``backfill``: submit run
ids, call :meth:`~RunSupervisor.poll` now and then (it starts waiting runs
while fewer than ``max_runs`` run, and returns the ends it saw), and
:meth:`~RunSupervisor.stop` at the end. Each worker
(:mod:`batchpilot.scheduler.worker`) is a separate Python process in its own
process group, so a run that crashes or is killed for memory never takes the
caller down, and a Ctrl-C in the caller's terminal reaches only the caller.
The supervisor does not read the store: what a run's end means is the
caller's business (``RunEnd.exit_code``, then the store).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from batchpilot.settings import Settings

DEFAULT_MAX_RUNS = 4
#: Seconds a worker has to stop after SIGTERM before it is killed.
STOP_GRACE_S = 20.0
WORKER_MODULE = "batchpilot.scheduler.worker"


@dataclass(frozen=True)
class RunEnd:
    """A worker that exited: its run and exit code (see :mod:`batchpilot.scheduler.worker`;
    negative: killed by that signal)."""

    run_id: str
    exit_code: int


@dataclass
class _Worker:
    run_id: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]


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
        python: str = sys.executable,
    ) -> None:
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, got {max_runs}")
        self.settings = settings
        self.max_runs = max_runs
        self.python = python
        self._env = worker_environment(settings, os.environ if environment is None else environment)
        self._waiting: deque[str] = deque()
        self._running: dict[str, _Worker] = {}
        self.log_dir: Path = settings.home / "serve" / "workers"

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
        return worker.process.pid if worker else None

    # -- acting ---------------------------------------------------------------------------

    def submit(self, run_id: str) -> bool:
        """Queue a run to be driven; False (and nothing done) when it is held already."""
        if self.holds(run_id):
            return False
        self._waiting.append(run_id)
        return True

    def poll(self) -> list[RunEnd]:
        """Collect the workers that exited and start waiting runs into the free places;
        returns the ends seen, in the order found."""
        ends = self._collect()
        while self._waiting and len(self._running) < self.max_runs:
            self._start(self._waiting.popleft())
        return ends

    def stop(self, *, grace_s: float = STOP_GRACE_S) -> list[RunEnd]:
        """Forget waiting runs, send SIGTERM to every worker's process group (the engine
        leaves their runs resumable), wait up to ``grace_s``, then SIGKILL what is left."""
        self._waiting.clear()
        for worker in self._running.values():
            _signal_group(worker.process, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
            ends = self._collect()
            if not self._running:
                return ends
        for worker in self._running.values():
            _signal_group(worker.process, signal.SIGKILL)
            worker.process.wait()
        return self._collect()

    def _collect(self) -> list[RunEnd]:
        ends = []
        for run_id, worker in list(self._running.items()):
            code = worker.process.poll()
            if code is not None:
                worker.log.close()
                del self._running[run_id]
                ends.append(RunEnd(run_id, code))
        return ends

    def _start(self, run_id: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{run_id}.log").open("ab")
        process = subprocess.Popen(
            [self.python, "-m", WORKER_MODULE, run_id],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals reach it and its children
        )
        self._running[run_id] = _Worker(run_id, process, log)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):  # it exited already
        os.killpg(process.pid, signum)


__all__ = [
    "DEFAULT_MAX_RUNS",
    "STOP_GRACE_S",
    "RunEnd",
    "RunSupervisor",
    "worker_environment",
]
