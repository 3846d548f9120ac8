"""``batchpilot`` commands a test leaves running (``serve``, ``backfill``): each a real
subprocess in its own process group with its output in a log file, guarded so that it dies
with pytest, and killed when the test ends (passed or not) with every worker it left
running (the ``cli_processes`` fixture in tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from batchpilot.states import RunStatus
from batchpilot.store import RunRecord, RunStore
from tests.cli_runner import Cli
from tests.process_guard import guard_process
from tests.waiting import WAIT_S, wait_until


class CliProcess:
    """``python -m batchpilot ARGS`` with a test's environment, in its own process group."""

    def __init__(self, cli: Cli, args: tuple[str, ...], log: Path) -> None:
        self.args = args
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batchpilot", *args],
            env=cli.env,
            cwd=cli.cwd,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        guard_process(self.process.pid)  # killed by the fixture; and if pytest is killed

    def terminate(self) -> int:
        """SIGTERM; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """kill -9 of the command alone (its workers live in their own groups)."""
        self.process.kill()
        self.process.wait(timeout=30)

    def output(self) -> str:
        """What it printed so far (stdout and stderr)."""
        return self.log.read_text()

    def wait_for(self, check: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> object:
        """Poll ``check`` until it returns something truthy and return that (an event, not
        a timing claim); fails showing what the command said if ``timeout_s`` passes."""
        return wait_until(check, what, self.output, timeout_s=timeout_s, interval_s=0.2)


class CliProcesses:
    """Starts :class:`CliProcess` es of one test, their logs numbered in ``logs``."""

    def __init__(self, cli: Cli, logs: Path) -> None:
        self.cli = cli
        self.logs = logs
        self.started: list[CliProcess] = []

    def __call__(self, *args: str) -> CliProcess:
        """Start ``batchpilot ARGS``; its log is ``<command>-<n>.log``."""
        process = CliProcess(self.cli, args, self.logs / f"{args[0]}-{len(self.started)}.log")
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        """SIGKILL the process group of every started command still alive, then the
        workers of the runs they left running in the test's home."""
        for started in self.started:
            if started.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(started.process.pid, signal.SIGKILL)
                started.process.wait(timeout=30)
        store = RunStore.for_home(Path(self.cli.env["BATCHPILOT_HOME"]))
        try:
            kill_run_owners(store)
        finally:
            store.dispose()


def kill_run_owners(store: RunStore) -> None:
    """SIGKILL the process group of every run's worker still recorded as running."""
    for run in store.runs_in_status([RunStatus.RUNNING, RunStatus.QUEUED]):
        kill_run_owner(run)


def kill_run_owner(run: RunRecord) -> None:
    """SIGKILL the process group of the worker that owns ``run`` (if any is recorded)."""
    if run.owner:
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(run.owner.split(":")[1]), signal.SIGKILL)
