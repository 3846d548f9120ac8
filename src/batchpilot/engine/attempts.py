"""One attempt of a step on a worker thread, and how the engine stops it.

Stopping (cancel, timeout, Ctrl-C) does three things: sets the attempt's
cancel event (steps poll it between batches), runs the cancel hooks steps
registered (e.g. cancel a SQL statement on the server), and raises
:class:`AttemptStopped` inside the worker thread so a pure-Python loop stops
at its next bytecode.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from batchpilot.engine.task_logs import AttemptLog
from batchpilot.errors import BatchpilotError, PermanentStepError, SpecError, StepError
from batchpilot.steps.base import Step, StepContext, StepResult

MAX_ERROR_CHARS = 500


class StopReason(StrEnum):
    """Why the engine stopped a running attempt."""

    TIMEOUT = "timeout"
    CANCEL = "cancel"
    INTERRUPT = "interrupt"


class AttemptStopped(BaseException):
    """Raised inside a worker thread to stop its step; user code's ``except Exception``
    does not swallow it."""


def one_line_error(exc: BaseException) -> str:
    """A single line naming what went wrong, for ``runs show`` (the log has the traceback)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if not isinstance(exc, BatchpilotError):
        first = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return first[:MAX_ERROR_CHARS]


@dataclass
class AttemptOutcome:
    """What one attempt of a step returned or raised."""

    task_id: str
    attempt: int
    result: StepResult | None = None
    error: BaseException | None = None
    duration_s: float = 0.0
    stop_reason: StopReason | None = None


@dataclass
class AttemptHandle:
    """A running attempt as the engine sees it."""

    task_id: str
    attempt: int
    log_path: Path
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
    def deadline(self) -> float | None:
        """When the attempt times out (monotonic clock), if it has a timeout."""
        return self.started + self.timeout_s if self.timeout_s else None

    def begin(self, log_path: Path) -> None:
        """Start for real an attempt that started early: its log moves to ``log_path``,
        its timeout starts now, and its step may commit."""
        with self._lock:
            if self._log_open and log_path != self.log_path:
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

    def run(
        self,
        build: Callable[[], tuple[Step, StepContext]],
        *,
        header: str,
        redact: Callable[[str], str],
    ) -> AttemptOutcome:
        """Build and run the step, logging to the attempt's file; never raises."""
        outcome = AttemptOutcome(self.task_id, self.attempt)
        started = time.perf_counter()
        try:
            self._run(build, outcome, header, redact)
        except AttemptStopped as exc:  # landed outside the step, while wrapping up
            if outcome.error is None and outcome.result is None:
                outcome.error = exc
        # an attempt that started early counts from when it really started
        outcome.duration_s = time.perf_counter() - (self._began or started)
        outcome.stop_reason = self.stop_reason
        return outcome

    def _run(
        self,
        build: Callable[[], tuple[Step, StepContext]],
        outcome: AttemptOutcome,
        header: str,
        redact: Callable[[str], str],
    ) -> None:
        with self._lock:
            attempt_log = AttemptLog(self.log_path, name=f"batchpilot.task.{self.task_id}")
            self._log_open = True
        with attempt_log as log:
            log.logger.info("%s", header)
            try:
                with self._lock:
                    self._thread_id = threading.get_ident()
                step, context = build()
                context.log = log.logger
                with self._lock:
                    self._context = context
                if self.cancel.is_set():
                    raise AttemptStopped
                result = step.run(context)
                context.wait_for_start()  # no outcome before the task really started
                with self._lock:
                    self._finished = True
                outcome.result = result
                log.logger.info("succeeded: %s", describe(result))
            except SpecError as exc:
                self._finish()
                # A config that only fails once rendered is bad input: no retry can fix it.
                outcome.error = PermanentStepError(str(exc))
                log.logger.error("invalid configuration: %s", exc)
            except BaseException as exc:
                self._finish()
                outcome.error = exc
                if self.stop_reason is not None:
                    log.logger.error(
                        "stopped (%s): %s", self.stop_reason.value, one_line_error(exc)
                    )
                else:
                    text = "".join(traceback.format_exception(exc))
                    log.logger.error("failed: %s\n%s", redact(one_line_error(exc)), redact(text))

    def outcome_of(self, future: Future[AttemptOutcome]) -> AttemptOutcome:
        """The outcome a finished Future holds; a stop that landed after the
        attempt's own handlers counts as stopped."""
        error = future.exception()
        if error is None:
            return future.result()
        return AttemptOutcome(self.task_id, self.attempt, error=error, stop_reason=self.stop_reason)

    def _finish(self) -> None:
        with self._lock:
            self._finished = True


def describe(result: StepResult) -> str:
    """``rows_in=…, rows_out=…`` for the log."""
    parts = []
    for name in ("rows_in", "rows_out", "rows_rejected"):
        value = getattr(result, name)
        if value is not None:
            parts.append(f"{name}={value}")
    return ", ".join(parts) or "done"


def wait_for_attempts(
    running: dict[Future[AttemptOutcome], AttemptHandle],
    *,
    wake_at: Iterable[float],
    grace_s: float,
) -> list[tuple[AttemptHandle, AttemptOutcome]]:
    """Wait until an attempt ends, one passes its deadline, or the earliest of ``wake_at``.

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
    if running:
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
