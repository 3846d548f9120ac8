"""The test side of ``airflow_driver.py``: one driver process in the Airflow venv, asked
one request at a time.

The process imports Airflow once and keeps its in-process execution API; each
``dag.test()`` in a process of its own paid for both again (about 15 of its 17 CPU
seconds). It runs in its own process group, guarded (``tests/process_guard.py``), and a
request it does not answer in time fails the test that made it, with the end of the
driver's log, and stops the driver: the next request starts a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

from tests.process_guard import guard_process

DRIVER = Path(__file__).resolve().parent / "airflow_driver.py"
#: seconds the driver has to import Airflow and say it is ready
START_TIMEOUT_S = 180.0
#: seconds one request (a migration, a DagBag, a ``dag.test()``) may take by default
REQUEST_TIMEOUT_S = 300.0
LOG_TAIL_CHARS = 5000


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Put each line of ``stream`` on ``lines``, then ``None`` at its end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


class AirflowDriver:
    """``script`` (``airflow_driver.py``) run by ``python`` (the Airflow venv's), started
    on first use.

    ``environment`` gives the environment of the process and of each request, read at
    the time of the request (so a test's own variables, e.g. AWS ones, reach its tasks);
    its AIRFLOW_* variables must not change while the driver runs. Airflow's and the
    tasks' logs go to ``log``.
    """

    def __init__(
        self,
        python: Path,
        environment: Callable[[], dict[str, str]],
        log: Path,
        script: Path = DRIVER,
    ) -> None:
        self.python = python
        self.environment = environment
        self.log = log
        self.script = script
        self._process: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()

    def request(self, command: str, *args: Any, timeout: float = REQUEST_TIMEOUT_S) -> Any:
        """Have the driver run ``command`` with ``args``; return its result.

        Fails the calling test when the driver answers with an error, exits, or gives no
        answer within ``timeout`` seconds (then it is stopped first)."""
        process = self._running()
        request = {"command": command, "args": list(args), "env": self.environment()}
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except BrokenPipeError:
            self._fail(f"the Airflow driver exited before it read the request {command!r}")
        answer = self._next_answer(f"the request {command} {args!r}", timeout)
        if "error" in answer:
            self._fail(f"the Airflow driver failed {command} {args!r}:\n{answer['error']}")
        return answer["result"]

    def stop(self, *, grace_s: float = 10.0) -> None:
        """End the driver: at the end of its input, else (after ``grace_s`` seconds) by
        SIGKILL to its process group."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            assert process.stdin is not None
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a hung driver, or what it left behind
        process.wait(timeout=10)

    @property
    def pid(self) -> int | None:
        """The driver's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def _running(self) -> subprocess.Popen[str]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self.stop()  # reaps one that exited
        with self.log.open("a") as log:
            self._process = subprocess.Popen(
                [str(self.python), str(self.script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=self.environment(),
                start_new_session=True,  # stopped by process group
            )
        guard_process(self._process.pid)  # stopped by stop(); and if pytest is killed
        self._answers = queue.Queue()  # a stopped driver's late answer never reaches the next
        reader = threading.Thread(
            target=_read_lines, args=(self._process.stdout, self._answers), daemon=True
        )
        reader.start()
        self._next_answer("its start (importing Airflow)", START_TIMEOUT_S)
        return self._process

    def _next_answer(self, what: str, timeout: float) -> dict[str, Any]:
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            self.stop(grace_s=0)  # it hangs: it would not read the end of its input either
            self._fail(f"the Airflow driver did not answer {what} within {timeout:.0f} s")
        if line is None:
            process = self._process
            code = process.wait(timeout=10) if process is not None else None
            self.stop()
            self._fail(f"the Airflow driver exited (code {code}) during {what}")
        return dict(json.loads(line))

    def _fail(self, message: str) -> NoReturn:
        tail = self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:] if self.log.exists() else ""
        pytest.fail(f"{message}\n--- end of {self.log} ---\n{tail}", pytrace=False)
