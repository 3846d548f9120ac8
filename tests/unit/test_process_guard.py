"""A server a fixture starts dies with the test process, even when that is killed
(``tests/process_guard.py``); its watchdog goes away by itself when the server ends first."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.conftest import REPO_ROOT
from tests.process_guard import guard_process

WAIT_S = 30.0

#: a stand-in for pytest: starts a long-running "server" in a session of its own, as the
#: fixtures do, guarded, writes the server's pid, and waits to be killed
PARENT = """
import subprocess, sys, time
from tests.process_guard import guard_process
server = subprocess.Popen(["sleep", "300"], start_new_session=True)
guard_process(server.pid)
open(sys.argv[1], "w").write(str(server.pid))
time.sleep(300)
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {WAIT_S}s"
        time.sleep(0.05)


def start_parent(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    pid_file = tmp_path / "server.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(pid_file)],
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", "the server to start")
    return parent, int(pid_file.read_text())


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def test_a_guarded_server_dies_when_the_test_process_is_killed(tmp_path: Path) -> None:
    parent, server = start_parent(tmp_path)
    try:
        parent.kill()  # SIGKILL: no fixture cleanup runs
        parent.wait()
        wait_until(lambda: gone(server), "the guarded server to be stopped")
    finally:
        kill_group(parent.pid)
        kill_group(server)


def test_the_watchdog_exits_when_its_server_ends_first() -> None:
    server = subprocess.Popen(["sleep", "300"], start_new_session=True)
    watchdog = guard_process(server.pid)
    try:
        server.kill()  # the fixture's own cleanup
        server.wait()
        assert watchdog.wait(timeout=WAIT_S) == 0
    finally:
        kill_group(server.pid)
        kill_group(watchdog.pid)
