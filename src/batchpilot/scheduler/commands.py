"""Side processes of ``serve``: long ``batchpilot`` commands the API starts (a backfill, a
compensation), each in its own process group, supervised and stopped with ``serve``.

Running them as ``python -m batchpilot …`` keeps their work out of the server
(a crash or an out-of-memory kill takes only that process) and reuses the CLI's
own rules and progress records in the store. Their output goes to a log file
under ``<home>/serve/commands``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from batchpilot.scheduler.supervisor import STOP_GRACE_S, worker_environment
from batchpilot.settings import Settings


@dataclass
class _Command:
    label: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]


class CommandSupervisor:
    """Starts ``batchpilot`` commands in their own process groups; stops them on :meth:`stop`.

    Thread-safe: the API starts commands from request threads while ``serve``'s
    dispatcher reaps them.
    """

    name = "commands"

    def __init__(
        self,
        settings: Settings,
        *,
        environment: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.python = python
        self._env = worker_environment(settings, os.environ if environment is None else environment)
        self.log_dir: Path = settings.home / "serve" / "commands"
        self._running: list[_Command] = []
        self._lock = threading.Lock()

    def start_command(self, label: str, args: Sequence[str]) -> int:
        """Start ``batchpilot ARGS``; returns its process id. ``label`` names its log file."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        log = (self.log_dir / f"{stamp}-{label}.log").open("ab")
        process = subprocess.Popen(
            [self.python, "-m", "batchpilot", *args],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with self._lock:
            self._reap()
            self._running.append(_Command(label, process, log))
        return process.pid

    def running(self) -> list[str]:
        """Labels of the commands still running."""
        with self._lock:
            self._reap()
            return [c.label for c in self._running]

    def start(self) -> None:
        """Nothing to start: commands start on demand."""

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every command's process group (a backfill or compensation stops
        resumably), wait up to ``grace_s``, then SIGKILL what is left."""
        with self._lock:
            for command in self._running:
                _signal_group(command.process, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self._running and time.monotonic() < deadline:
                time.sleep(0.05)
                self._reap()
            for command in self._running:
                _signal_group(command.process, signal.SIGKILL)
                command.process.wait()
            self._reap()

    def _reap(self) -> None:
        for command in list(self._running):
            if command.process.poll() is not None:
                command.log.close()
                self._running.remove(command)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


__all__ = ["CommandSupervisor"]
