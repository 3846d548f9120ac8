"""Servers the tests start die with the test process, even when it is killed.

A fixture's own cleanup stops its server when pytest ends normally or a test
fails; when pytest itself is killed (SIGKILL, a CI timeout, an OOM kill), no
cleanup runs and the servers (PostgreSQL, moto, Airflow, ``serve``) lived on
for hours. :func:`guard_process` starts a small watchdog beside such a server:
a process of its own session (a signal to pytest's process group does not reach
it) that looks every :data:`POLL_S` whether its parent (the pytest process) is
gone and whether the server still runs. When the server ends first, the
watchdog exits; when pytest goes first, it stops the server's whole process
tree (its process group and descendants, e.g. ``serve``'s workers in sessions of
their own): ``first_signal``, then SIGKILL after :data:`GRACE_S`.

``python tests/process_guard.py PARENT_PID PID SIGNAL`` is the watchdog itself
(standard library and psutil only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import psutil

#: seconds between two looks of the watchdog
POLL_S = 0.5
#: seconds the server has after ``first_signal`` before it is killed
GRACE_S = 5.0


def guard_process(pid: int, *, first_signal: int = signal.SIGTERM) -> subprocess.Popen[bytes]:
    """Start a watchdog that stops process ``pid`` (and its process tree) once this
    process is gone; it exits by itself when ``pid`` ends first. Returns the watchdog."""
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            str(os.getpid()),
            str(pid),
            str(first_signal),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to pytest's process group leaves it alive
        close_fds=True,
    )


def _tree(target: psutil.Process) -> list[psutil.Process]:
    """The target, its descendants, and the rest of its process group."""
    found = {target.pid: target}
    with suppress(psutil.Error):
        for child in target.children(recursive=True):
            found[child.pid] = child
    with suppress(OSError):
        group = os.getpgid(target.pid)
        for process in psutil.process_iter():
            with suppress(psutil.Error, OSError):
                if process.pid not in found and os.getpgid(process.pid) == group:
                    found[process.pid] = process
    return list(found.values())


def _watch(parent_pid: int, pid: int, first_signal: int) -> int:
    try:
        target = psutil.Process(pid)
    except psutil.Error:
        return 0
    while os.getppid() == parent_pid:  # re-parented: pytest is gone
        try:
            if not target.is_running() or target.status() == psutil.STATUS_ZOMBIE:
                return 0  # it ended (its fixture stopped it): nothing to guard any more
        except psutil.Error:
            return 0
        time.sleep(POLL_S)
    tree = _tree(target)
    for process in tree:
        with suppress(psutil.Error):
            process.send_signal(first_signal)
    _, alive = psutil.wait_procs(tree, timeout=GRACE_S)
    for process in alive:
        with suppress(psutil.Error):
            process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(_watch(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
