"""Start ``batchpilot`` in a subprocess, find its run, and kill it with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from batchpilot.errors import StoreError
from batchpilot.store import RunStore


class Batchpilot:
    """The CLI against one home, with extra environment (connections)."""

    def __init__(self, home: Path, cwd: Path, env: dict[str, str]) -> None:
        self.home = home
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
        self.env.update(env)
        self.env["BATCHPILOT_HOME"] = str(home)
        self.env["PYTHONPATH"] = str(cwd)
        self._store: RunStore | None = None

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "batchpilot", *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = 180) -> tuple[int, str, str]:
        proc = self.start(*args)
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err

    def json(self, *args: str) -> dict:
        code, out, err = self.run(*args, "-o", "json")
        assert out, f"no output (exit {code}): {err}"
        return json.loads(out)

    def store(self) -> RunStore:
        """The home's store, read as it is (the CLI under test creates and migrates it)."""
        if self._store is None:
            self._store = RunStore(f"sqlite:///{self.home / 'state.db'}", migrate=False)
        return self._store

    def wait_for_new_run(
        self, known: set[str], proc: subprocess.Popen[str], timeout: float = 60
    ) -> str | None:
        """The id of the run ``proc`` created (None if it ended before creating one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = proc.poll() is not None  # before the look: a run it made by then is seen
            fresh = self._runs_not_in(known)
            if fresh:
                return fresh[0]
            if ended:
                return None
            time.sleep(0.05)
        raise AssertionError("the run did not start in time")

    def _runs_not_in(self, known: set[str]) -> list[str]:
        if not (self.home / "state.db").exists():
            return []
        try:
            runs = self.store().list_runs(limit=5)
        except StoreError:
            return []  # its tables are still being created
        return [r.run_id for r in runs if r.run_id not in known]


def kill(proc: subprocess.Popen[str]) -> bool:
    """SIGKILL the process; True if it was still running."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    return True
