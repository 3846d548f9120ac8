"""A pool of daemon worker threads for step attempts.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the
interpreter exits, so one attempt stuck in C code (a ``sleep``, a blocking
driver call) that ignored a stop would keep ``batchpilot`` from exiting after
Ctrl-C, a cancel or a timeout. These threads are daemons: an abandoned attempt
never holds the process.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_STOP = object()


class DaemonThreadPool:
    """Runs callables on up to ``max_workers`` daemon threads, returning Futures."""

    def __init__(self, max_workers: int, *, name: str = "bp-task") -> None:
        self._max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        # one token per ended callable: what :meth:`wait_for_any` waits on
        self._ended: queue.SimpleQueue[None] = queue.SimpleQueue()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Schedule ``fn(*args)``; its result or exception lands in the returned Future."""
        future: Future[T] = Future()
        self._queue.put((future, fn, args))
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1
        return future

    def wait_for_any(self, done: Callable[[], bool], timeout: float) -> None:
        """Return once ``done()`` is true, checking it each time a callable submitted here
        ends, or after ``timeout`` seconds (a cheaper wait than ``concurrent.futures.wait``,
        which hooks a waiter on every Future for each wait)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                while True:  # tokens of ends that came before this check
                    self._ended.get_nowait()
            except queue.Empty:
                pass
            if done():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                self._ended.get(timeout=remaining)
            except queue.Empty:
                return

    def shutdown(self) -> None:
        """Let idle threads end; busy ones finish (or are abandoned) on their own."""
        for _ in self._threads:
            self._queue.put(_STOP)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                with self._lock:
                    self._idle += 1
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                self._ended_with(future, None, exc)
            else:
                self._ended_with(future, result, None)

    def _ended_with(self, future: Future[Any], result: Any, error: BaseException | None) -> None:
        # Idle before the Future is done: work submitted once it is done finds this thread.
        with self._lock:
            self._idle += 1
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
        self._ended.put(None)
