"""A task body that counts how many of its copies run at once, for the tests of the
engine's worker count."""

from __future__ import annotations

import threading
import time


class PeakConcurrency:
    """``work`` holds a worker for ``hold_s`` seconds; ``peak`` is the most copies of it
    that ran at the same time."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.peak = 0
        self._running = 0
        self._lock = threading.Lock()

    def work(self) -> None:
        """The task body: count in, hold, count out."""
        with self._lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
        time.sleep(self.hold_s)
        with self._lock:
            self._running -= 1
