"""The monitor inside ``batchpilot serve``: evaluates the rules on runs its workers ended,
checks the deadlines on its clock, and delivers the outbox.

Workers are separate processes that know nothing of channels; this loop
finds runs whose ending no monitor has evaluated yet (``store.alerts``), so a
run is evaluated once whether ``batchpilot run`` or a worker drove it, and a run
that ended while ``serve`` was down is evaluated when it is back (within the
lookback). Then it delivers what is due in the outbox.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import timedelta

from batchpilot.errors import first_line
from batchpilot.monitor.deadlines import DeadlineWatch, TaskDeadlineWatch
from batchpilot.monitor.evaluate import evaluate_run
from batchpilot.monitor.missed_schedule import MissedScheduleWatch
from batchpilot.notify import ChannelRegistry, Clock, deliver_due
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore

#: How often the loop looks for ended runs and due messages.
MONITOR_INTERVAL_S = 2.0
#: Runs that ended this long before ``serve`` started are still evaluated.
LOOKBACK = timedelta(hours=1)
#: Delivery rounds per step at most (each up to the deliverer's batch of messages).
MAX_DELIVERY_ROUNDS = 10

Say = Callable[[str], None]


class MonitorLoop:
    """A ``serve`` component (``name``, ``start``, ``stop``): evaluates ended runs, delivers
    notifications, every ``interval_s`` until ``stopping`` is set."""

    name = "monitor"

    def __init__(
        self,
        store: RunStore,
        channels: ChannelRegistry,
        clock: Clock,
        stopping: threading.Event,
        *,
        say: Say = lambda message: None,
        interval_s: float = MONITOR_INTERVAL_S,
        pipelines: Callable[[], Mapping[str, PipelineSpec]] | None = None,
    ) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock
        self.stopping = stopping
        self.say = say
        self.interval_s = interval_s
        self.since = clock.now() - LOOKBACK
        self.deadlines = (
            DeadlineWatch(store, clock, pipelines, channels) if pipelines is not None else None
        )
        self.task_deadlines = TaskDeadlineWatch(store, clock, channels)
        self.missed_schedules = MissedScheduleWatch(
            store, clock, pipelines or (lambda: {}), channels
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin in a thread of its own."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Wait for the loop to end (``stopping`` is set by ``serve``)."""
        if self._thread is not None:
            self._thread.join()

    def step(self) -> None:
        """Alert on slots the scheduler missed, evaluate every run ended since the lookback
        and not yet evaluated, check the deadlines (the pipelines' and the running runs'
        tasks'), then deliver."""
        for verdict in self.missed_schedules.check():
            self.say(f"alert: missed schedule: {verdict.summary}")
        self.evaluate_ended_runs()
        if self.deadlines is not None:
            for verdict in self.deadlines.check():
                if verdict.fired:
                    self.say(f"alert: deadline missed: {verdict.summary}")
        for verdict in self.task_deadlines.check():
            self.say(f"alert: task deadline missed: {verdict.summary}")
        self.deliver()

    def evaluate_ended_runs(self) -> int:
        """Evaluate the rules on runs whose ending is not evaluated yet; returns how many."""
        done = 0
        for run_id in self.store.alerts.unevaluated_ended_runs(since=self.since):
            try:
                plan = evaluate_run(
                    self.store, run_id, defined_channels=self.channels, clock=self.clock
                )
            except Exception as exc:  # one run that cannot be evaluated must not stop the rest
                self.say(f"monitor: run {run_id} not evaluated: {first_line(exc)}")
                continue
            done += 1
            for alert in plan.opened if plan else ():
                self.say(f"alert: {alert.pipeline}: {alert.rule} ({alert.observed})")
        return done

    def deliver(self) -> None:
        """Deliver due notifications, a few rounds at most."""
        if not len(self.channels):
            return
        for _ in range(MAX_DELIVERY_ROUNDS):
            report = deliver_due(self.store, self.channels, self.clock)
            if report.claimed == 0 or report.delivered == 0 or self.stopping.is_set():
                return

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception as exc:  # the loop outlives any one failed step (store away…)
                self.say(f"{self.name}: {type(exc).__name__}: {first_line(exc)}")
            if self.stopping.wait(self.interval_s):
                break


__all__ = ["LOOKBACK", "MONITOR_INTERVAL_S", "MonitorLoop"]
