"""What the components of ``batchpilot serve`` share, and how one is built.

:class:`ServeOptions` says how ``serve`` runs (where the pipelines are, how many runs
at once, its pace); :class:`ServeContext` holds what every component shares (the
settings, one state store, one clock, the engine's :class:`RunService`, the events
that wake one component from another). A :class:`Component` has ``start()`` and
``stop()``; :class:`LoopingComponent` is one whose work is a step repeated until
``serve`` stops. The components themselves: :mod:`batchpilot.scheduler.serve` (the
scheduler loop, retention), :mod:`batchpilot.scheduler.dispatcher` (queued runs to
workers), :mod:`batchpilot.api` (the REST API and dashboard).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from batchpilot.clock import Clock, SystemClock
from batchpilot.engine import RunService
from batchpilot.errors import first_line
from batchpilot.scheduler.catalog import CATALOG_POLL_S
from batchpilot.scheduler.supervisor import DEFAULT_MAX_RUNS, STOP_GRACE_S
from batchpilot.settings import Settings
from batchpilot.store import RunStore

#: Seconds between two scheduling passes at most (a pass also runs when a slot falls due).
TICK_S = 1.0
#: Seconds between two looks for queued runs and ended workers, while runs are queued or
#: running; with none, :data:`DISPATCH_IDLE_S` (a run queued by this process, its API or
#: its dashboard wakes the dispatcher at once either way).
DISPATCH_S = 0.25
DISPATCH_IDLE_S = 1.0
#: Seconds after a follower lost track of a run on Airflow before it is followed again.
REFOLLOW_AFTER_S = 60.0


class DeadRunPolicy(StrEnum):
    """What ``serve`` does at start with runs whose process died."""

    RESUME = "resume"
    REAP = "reap"


@dataclass(frozen=True)
class ServeOptions:
    """How ``serve`` runs: where the pipelines are, how many runs at once, and its pace."""

    pipelines: Path
    max_runs: int = DEFAULT_MAX_RUNS
    on_dead_runs: DeadRunPolicy = DeadRunPolicy.RESUME
    tick_s: float = TICK_S
    catalog_poll_s: float = CATALOG_POLL_S
    dispatch_s: float = DISPATCH_S
    dispatch_idle_s: float = DISPATCH_IDLE_S
    stop_grace_s: float = STOP_GRACE_S
    #: False (``--no-scheduler``): no schedules or triggers fire; queued runs still execute
    scheduling: bool = True
    refollow_after_s: float = REFOLLOW_AFTER_S


Say = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default ``say``: nothing."""


@dataclass
class ServeContext:
    """What the components of one ``serve`` share."""

    settings: Settings
    store: RunStore
    clock: Clock = field(default_factory=SystemClock)
    say: Say = _quiet
    stopping: threading.Event = field(default_factory=threading.Event)
    #: set when runs were queued (a pass, the API, the dashboard), so the dispatcher looks
    #: at once
    runs_queued: threading.Event = field(default_factory=threading.Event)
    #: set when a worker ended (its run ended, mostly), so the monitor evaluates at once
    runs_ended: threading.Event = field(default_factory=threading.Event)

    @property
    def service(self) -> RunService:
        """The engine's services on this store."""
        return RunService(settings=self.settings, store=self.store)


class Component(Protocol):
    """A part of ``serve`` with a lifecycle (the scheduler loop, the dispatcher, the API)."""

    name: str

    def start(self) -> None:
        """Begin (in a thread of its own); return at once."""
        ...

    def stop(self) -> None:
        """End and wait until ended; called once, after ``context.stopping`` is set."""
        ...


class LoopingComponent:
    """A component whose work is one step repeated every ``interval_s`` until stopping."""

    name = "loop"
    interval_s = 1.0

    def __init__(self, context: ServeContext) -> None:
        self.context = context
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def step(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self.context.stopping.is_set():
            try:
                self.step()
            except Exception as exc:  # the loop outlives any one failed step
                # e.g. the state store unreachable for a while: say so, try again next time
                self.context.say(f"{self.name}: {type(exc).__name__}: {first_line(exc)}")
            if self.pause():
                break
        self.finish()

    def pause(self) -> bool:
        """Wait until the next step; True when stopping."""
        return self.context.stopping.wait(self.interval_s)

    def finish(self) -> None:
        """Runs in the component's thread once stopping is set."""


__all__ = [
    "DISPATCH_IDLE_S",
    "DISPATCH_S",
    "REFOLLOW_AFTER_S",
    "TICK_S",
    "Component",
    "DeadRunPolicy",
    "LoopingComponent",
    "Say",
    "ServeContext",
    "ServeOptions",
]
