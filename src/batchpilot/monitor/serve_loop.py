"""The monitor inside ``batchpilot serve``: evaluates the rules on runs its workers ended,
checks the deadlines on its clock, and delivers the outbox.

Workers are separate processes that know nothing of channels; this loop
finds runs whose ending no monitor has evaluated yet (``store.alerts``), so a
run is evaluated once whether ``batchpilot run`` or a worker drove it, and a run
that ended while ``serve`` was down is evaluated when it is back (within the
lookback). Then it delivers what is due in the outbox.

The deadlines and the outbox are looked at every :data:`MONITOR_INTERVAL_S`. Ended
runs are looked for when ``serve``'s dispatcher says a worker ended
(``runs_ended``: the loop wakes at once), and every :data:`EVALUATE_EVERY_S` for
runs that ended without a worker of this ``serve`` (a queued run cancelled over the
API, another ``serve`` on the same store); that look reads the store, and an idle
``serve`` need not make it every 2 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

from batchpilot.errors import first_line
from batchpilot.monitor.deadlines import DeadlineWatch, TaskDeadlineWatch
from batchpilot.monitor.evaluate import evaluate_run
from batchpilot.monitor.missed_schedule import MissedScheduleWatch
from batchpilot.notify import ChannelRegistry, Clock, deliver_due
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore

#: How often the loop checks the deadlines and delivers due messages.
MONITOR_INTERVAL_S = 2.0
#: How often the loop looks for ended runs unwoken (with ``runs_ended``; without, at
#: every step).
EVALUATE_EVERY_S = 10.0
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
        runs_ended: threading.Event | None = None,
        evaluate_every_s: float = EVALUATE_EVERY_S,
    ) -> None:
        """``runs_ended`` (set by ``serve``'s dispatcher when a worker ended) wakes the loop
        to evaluate at once; then unwoken looks for ended runs are every
        ``evaluate_every_s``. Without it, every step looks."""
        self.store = store
        self.channels = channels
        self.clock = clock
        self.stopping = stopping
        self.say = say
        self.interval_s = interval_s
        self.runs_ended = runs_ended
        self.evaluate_every_s = evaluate_every_s
        self._next_evaluation = 0.0  # on time.monotonic(): the first step looks
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
        if self.runs_ended is not None:
            self.runs_ended.set()  # its wait ends now
        if self._thread is not None:
            self._thread.join()

    def step(self) -> None:
        """Alert on slots the scheduler missed, evaluate every run ended since the lookback
        and not yet evaluated (when a worker ended, or the unwoken look is due), check the
        deadlines (the pipelines' and the running runs' tasks'), then deliver."""
        evaluate = self.evaluation_due()  # first: a step that fails later never spins
        for verdict in self.missed_schedules.check():
            self.say(f"alert: missed schedule: {verdict.summary}")
        if evaluate:
            self.evaluate_ended_runs()
        if self.deadlines is not None:
            for verdict in self.deadlines.check():
                if verdict.fired:
                    self.say(f"alert: deadline missed: {verdict.summary}")
        for verdict in self.task_deadlines.check():
            self.say(f"alert: task deadline missed: {verdict.summary}")
        self.deliver()

    def evaluation_due(self) -> bool:
        """Whether this step looks for ended runs: always without ``runs_ended``; else when
        it is set (cleared here, before the store is read) or the unwoken look is due."""
        if self.runs_ended is None:
            return True
        now = time.monotonic()
        if not self.runs_ended.is_set() and now < self._next_evaluation:
            return False
        self.runs_ended.clear()
        self._next_evaluation = now + self.evaluate_every_s
        return True

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
            if self.pause():
                break

    def pause(self) -> bool:
        """Wait ``interval_s``, or less when a worker ended; True when stopping."""
        if self.runs_ended is None:
            return self.stopping.wait(self.interval_s)
        self.runs_ended.wait(self.interval_s)
        return self.stopping.is_set()


__all__ = ["EVALUATE_EVERY_S", "LOOKBACK", "MONITOR_INTERVAL_S", "MonitorLoop"]
