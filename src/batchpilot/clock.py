"""Time read through a clock, so tests move time instead of sleeping: the scheduler, the
monitor's deadlines and the notification deliverer all take one."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the scheduler, the monitor and the deliverer know of time."""

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        ...

    def sleep(self, seconds: float, *, stop: threading.Event | None = None) -> bool:
        """Wait ``seconds`` (or until ``stop`` is set); return True if ``stop`` is set."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        return datetime.now(UTC)

    def sleep(self, seconds: float, *, stop: threading.Event | None = None) -> bool:
        """Wait ``seconds`` (at least 0), waking early when ``stop`` is set."""
        seconds = max(0.0, seconds)
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)


class FakeClock:
    """A clock that only moves when told to: ``sleep`` advances it at once.

    Thread-safe, so a scheduler thread and a test can share one.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware start time (tzinfo=UTC)")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        #: every duration passed to :meth:`sleep`, in order
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        """The fake current instant."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float, *, stop: threading.Event | None = None) -> bool:
        """Record the wait and move time forward by it, without waiting."""
        self.advance(max(0.0, seconds))
        with self._lock:
            self.sleeps.append(max(0.0, seconds))
        return stop is not None and stop.is_set()

    def advance(self, by: float | timedelta) -> datetime:
        """Move time forward by seconds or a timedelta; returns the new instant."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if step < timedelta():
            raise ValueError(f"a clock does not go back (asked to move by {step})")
        with self._lock:
            self._now += step
            return self._now

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (aware; forward or back, as a wall clock set by hand can)."""
        if instant.tzinfo is None:
            raise ValueError("FakeClock.set needs an aware instant (tzinfo=UTC)")
        with self._lock:
            self._now = instant.astimezone(UTC)


__all__ = ["Clock", "FakeClock", "SystemClock"]
