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
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1
