"""A running attempt as the engine sees it (:class:`AttemptHandle`), and how it stops it.

Stopping (cancel, timeout, Ctrl-C) does three things: sets the attempt's
cancel event (steps poll it between batches), runs the cancel hooks steps
registered (e.g. cancel a SQL statement on the server), and raises
:class:`AttemptStopped` inside the worker thread so a pure-Python loop stops
at its next bytecode.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from batchpilot.engine.outputs import TaskOutput
from batchpilot.engine.task_logs import AttemptLog, ExternalLog
from batchpilot.engine.workers import DaemonThreadPool
from batchpilot.errors import StepError
from batchpilot.steps.base import StepContext


class StopReason(StrEnum):
    """Why the engine stopped a running attempt."""

    TIMEOUT = "timeout"
    CANCEL = "cancel"
    INTERRUPT = "interrupt"


class AttemptStopped(BaseException):
    """Raised inside a worker thread to stop its step; user code's ``except Exception``
    does not swallow it."""


@dataclass
class AttemptOutcome:
    """What one attempt of a step returned or raised."""

    task_id: str
    attempt: int
    output: TaskOutput | None = None
    error: BaseException | None = None
    duration_s: float = 0.0
    stop_reason: StopReason | None = None
    #: the log of an attempt without a log file, for its record in the store
    log_text: str | None = None


@dataclass
class AttemptHandle:
    """A running attempt as the engine sees it."""

    task_id: str
    attempt: int
    #: None: the attempt returns at once (run on the engine's thread) and its log is
    #: kept with its record in the store, not in a file (see :class:`AttemptLog`)
    log_path: Path | None
    timeout_s: float | None = None
    started: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    stop_reason: StopReason | None = None
    stop_deadline: float | None = None
    #: for an attempt started early (before its upstream ended): set by :meth:`begin`
    go: threading.Event | None = None
    _began: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread_id: int | None = None
    _finished: bool = False
    _log_open: bool = False
    _context: StepContext | None = None

    @property
    def began_at(self) -> float | None:
        """When an attempt that started early really began (``perf_counter``), if it did."""
        return self._began

    @property
    def deadline(self) -> float | None:
        """When the attempt times out (monotonic clock), if it has a timeout."""
        return self.started + self.timeout_s if self.timeout_s else None

    def begin(self, log_path: Path) -> None:
        """Start for real an attempt that started early: its log moves to ``log_path``,
        its timeout starts now, and its step may commit."""
        with self._lock:
            if self._log_open and self.log_path is not None and log_path != self.log_path:
                os.replace(self.log_path, log_path)
            self.log_path = log_path
            self.started = time.monotonic()
            self._began = time.perf_counter()
        assert self.go is not None
        self.go.set()

    def stop(self, reason: StopReason, *, grace_s: float) -> None:
        """Ask the attempt to stop now; the engine waits ``grace_s`` before giving up on it."""
        with self._lock:
            if self.stop_reason is not None:
                return
            self.stop_reason = reason
            self.stop_deadline = time.monotonic() + grace_s
            self.cancel.set()
            context = self._context
            if not self._finished and self._thread_id is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._thread_id), ctypes.py_object(AttemptStopped)
                )
        if context is not None:
            context.run_cancel_hooks()

    def attach(self, context: StepContext | None = None) -> None:
        """The attempt runs on the calling thread (and, once built, with ``context``):
        a stop from now on reaches it there."""
        with self._lock:
            self._thread_id = threading.get_ident()
            if context is not None:
                self._context = context

    def finished(self) -> None:
        """The step returned or raised: a stop must no longer be raised in its thread."""
        with self._lock:
            self._finished = True

    def open_log(self, log: logging.Logger | None = None) -> AttemptLog | ExternalLog:
        """The attempt's log: its own file (or text, see :attr:`log_path`), or ``log``
        (an Airflow worker's task log)."""
        if log is not None:
            return ExternalLog(log)
        with self._lock:
            self._log_open = True
            return AttemptLog(self.log_path, name=f"batchpilot.task.{self.task_id}")

    def outcome_of(self, future: Future[AttemptOutcome]) -> AttemptOutcome:
        """The outcome a finished Future holds; a stop that landed after the
        attempt's own handlers counts as stopped."""
        error = future.exception()
        if error is None:
            return future.result()
        return AttemptOutcome(self.task_id, self.attempt, error=error, stop_reason=self.stop_reason)


def wait_for_attempts(
    running: dict[Future[AttemptOutcome], AttemptHandle],
    *,
    wake_at: Iterable[float],
    grace_s: float,
    pool: DaemonThreadPool | None = None,
) -> list[tuple[AttemptHandle, AttemptOutcome]]:
    """Wait until an attempt ends, one passes its deadline, or the earliest of ``wake_at``.

    ``pool``: the pool the attempts run on, whose own wait is cheaper than
    ``concurrent.futures.wait`` (the engine waits once per scheduling step).

    Attempts past their timeout are asked to stop; those that ignored a stop for
    ``grace_s`` (stuck in C code) are given up on with an error. Ended and
    abandoned attempts leave ``running``; their outcomes are returned.
    """
    now = time.monotonic()
    wake = list(wake_at)
    for handle in running.values():
        limit = handle.stop_deadline if handle.stop_reason else handle.deadline
        if limit is not None:
            wake.append(limit)
    timeout = max(0.0, min(wake, default=now) - now)
    if running and pool is not None:
        done: Collection[Future[AttemptOutcome]] = []

        def any_done() -> bool:
            nonlocal done
            done = [f for f in running if f.done()]
            return bool(done)

        pool.wait_for_any(any_done, timeout)
    elif running:
        done, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
    else:
        time.sleep(timeout)
        done = set()
    finished = []
    for future in done:
        handle = running.pop(future)
        finished.append((handle, handle.outcome_of(future)))
    now = time.monotonic()
    for future, handle in list(running.items()):
        if handle.stop_reason is None:
            if handle.deadline is not None and handle.deadline <= now:
                handle.stop(StopReason.TIMEOUT, grace_s=grace_s)
        elif handle.stop_deadline is not None and handle.stop_deadline <= now:
            del running[future]
            abandoned = AttemptOutcome(
                handle.task_id,
                handle.attempt,
                error=StepError(f"did not stop within {grace_s:g}s; abandoned"),
                duration_s=now - handle.started,
                stop_reason=handle.stop_reason,
            )
            finished.append((handle, abandoned))
    return finished


def stop_attempts(
    running: Mapping[Future[AttemptOutcome], AttemptHandle], *, reason: StopReason, grace_s: float
) -> None:
    """Stop every running attempt and wait up to ``grace_s`` for them to end."""
    for handle in running.values():
        handle.stop(reason, grace_s=grace_s)
    wait(list(running), timeout=grace_s)
