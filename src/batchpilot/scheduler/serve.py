"""``batchpilot serve``: one long-running process made of components sharing one context.

:class:`ServeContext` holds what every component shares: the settings, one
state store, one clock, the engine's :class:`RunService`, and a stop event.
A component has ``start()`` (spawn its thread) and ``stop()`` (end it and wait):

- :class:`SchedulerLoop` re-reads the pipeline catalog (every
  :data:`CATALOG_POLL_S`) and runs one scheduling pass (:func:`run_tick`) at
  the instant the soonest slot falls due, and at least every ``tick_s`` (for
  the triggers); it remembers each schedule's next slot (:class:`NextSlots`),
  so a pass with nothing due costs a look-up per schedule;
- :class:`RunDispatcher` hands queued runs to a :class:`RunSupervisor` (worker
  processes, at most ``max_runs``), holding a schedule's runs back while
  ``max_active_runs`` of them run, and pauses a schedule after its failures.
  It looks every ``dispatch_s`` (every ``dispatch_idle_s`` while no run is queued
  or running), and at once when runs were queued (``runs_queued``: set by a pass,
  the API's execute, retry and resume, and the dashboard's buttons); it sets
  ``runs_ended`` when a worker ended, which wakes the monitor;
- :class:`RetentionLoop`, when ``BATCHPILOT_RETENTION`` or ``retention:`` in the home's
  ``settings.yaml`` is set, deletes ended runs
  older than it at start and then every :data:`RETENTION_EVERY`.

The REST API (:mod:`batchpilot.api`) is one more component on the same context,
given as ``extra_components`` by the CLI (the scheduler never imports the API).
:class:`ServeProcess` recovers runs whose process died (resume or reap),
follows again the runs in flight on a remote executor (Airflow), starts the
components, and stops them in reverse order.

A run on Airflow is followed by a worker too (it mirrors the DAG run into the
store). Stopping ``serve`` stops the follower, not the run; at its next start
``serve`` attaches a follower to every run the store shows in flight on Airflow,
whatever ``--on-dead-runs`` says (nothing died). A follower that loses track of
its run (Airflow unreachable for minutes, a login refused) records it
``unknown`` with the reason, and the dispatcher follows it again
:data:`REFOLLOW_AFTER_S` later, until it ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from batchpilot.engine import RunService
from batchpilot.engine.executors import LOCAL
from batchpilot.errors import first_line
from batchpilot.monitor.retention import RetentionPolicy, clean_runs, default_deleters
from batchpilot.scheduler.catalog import (
    CATALOG_POLL_S,
    CatalogEntry,
    PipelineCatalog,
    snapshot_path,
)
from batchpilot.scheduler.clock import Clock, SystemClock
from batchpilot.scheduler.policies import may_start
from batchpilot.scheduler.supervisor import DEFAULT_MAX_RUNS, STOP_GRACE_S, RunSupervisor
from batchpilot.scheduler.tick import (
    NextSlots,
    cancel_by_request,
    pause_after_failures,
    run_tick,
)
from batchpilot.scheduler.triggers import TriggerWatches, run_trigger_tick
from batchpilot.scheduler.worker import EXIT_FOLLOW_LOST
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import ActiveRunRecord, RunStore

#: Seconds between two scheduling passes at most (a pass also runs when a slot falls due).
TICK_S = 1.0
#: A pass for a slot starts this long after the slot's instant (the two clocks that time a
#: wait and read the time may differ by a little), and waits are never shorter than
#: :data:`MIN_WAIT_S`.
SLOT_MARGIN_S = 0.002
MIN_WAIT_S = 0.005
#: Seconds between two looks for queued runs and ended workers, while runs are queued or
#: running; with none, :data:`DISPATCH_IDLE_S` (a run queued by this process, its API or
#: its dashboard wakes the dispatcher at once either way).
DISPATCH_S = 0.25
DISPATCH_IDLE_S = 1.0
#: Seconds after a follower lost track of a run on Airflow before it is followed again.
REFOLLOW_AFTER_S = 60.0
#: How often ``serve`` cleans old runs when a retention is set.
RETENTION_EVERY = timedelta(days=1)


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


class _Looping:
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


class SchedulerLoop(_Looping):
    """Keeps the catalog fresh and claims due slots."""

    name = "scheduler"

    def __init__(self, context: ServeContext, catalog: PipelineCatalog, options: ServeOptions):
        super().__init__(context)
        self.catalog = catalog
        self.scheduling = options.scheduling
        self.interval_s = options.tick_s
        self.catalog_poll_s = options.catalog_poll_s
        self._next_refresh = 0.0  # on time.monotonic()
        #: each schedule's next slot, kept from pass to pass
        self.next_slots = NextSlots()
        #: the pipelines by name as last read (replaced whole, read by other threads)
        self.pipelines: dict[str, PipelineSpec] = {s.name: s for s in catalog.specs()}
        #: every pipeline file, with its error (replaced whole; read by the API's threads)
        self.entries: list[CatalogEntry] = catalog.entries()
        self.trigger_watches = TriggerWatches()

    def step(self) -> None:
        if time.monotonic() >= self._next_refresh:
            self.refresh_catalog()
            self._next_refresh = time.monotonic() + self.catalog_poll_s
        if not self.scheduling:
            return
        context = self.context
        service = context.service
        report = run_tick(
            self.catalog.scheduled(),
            context.store,
            context.clock,
            cancel=cancel_by_request(context.store, service.cancel),
            next_slots=self.next_slots,
        )
        if report.created:
            context.runs_queued.set()
        for name, count in report.missed.items():
            context.say(f"{name}: {count} slots missed while down (catchup applied)")
        for run_id in report.created:
            context.say(f"queued scheduled run {run_id}")
        self.fire_triggers()

    def next_wait_s(self) -> float:
        """Seconds until the next pass: until the soonest remembered slot falls due (read
        on the context's clock), at most ``tick_s``."""
        wait = self.interval_s
        due = self.next_slots.earliest_due()
        if due is not None:
            until_due = (due - self.context.clock.now()).total_seconds() + SLOT_MARGIN_S
            wait = min(wait, until_due)
        return max(MIN_WAIT_S, wait)

    def pause(self) -> bool:
        return self.context.clock.sleep(self.next_wait_s(), stop=self.context.stopping)

    def fire_triggers(self) -> None:
        """Start the runs the triggers of unpaused pipelines call for (files, upstream runs)."""
        store = self.context.store
        paused = {s.pipeline for s in store.schedules.schedule_states() if s.paused}
        specs = [s for s in self.catalog.triggered() if s.name not in paused]
        fired = run_trigger_tick(specs, store, self.context.clock, self.trigger_watches)
        if fired.created:
            self.context.runs_queued.set()
        for run_id in fired.created:
            self.context.say(f"queued triggered run {run_id}")
        for name, error in fired.errors.items():
            self.context.say(f"{name}: trigger cannot start a run: {error}")

    def refresh_catalog(self) -> None:
        """Re-read changed files, say what changed, and save the snapshot."""
        changes = self.catalog.refresh()
        if not changes and self.pipelines:
            return
        self.entries = self.catalog.entries()
        for entry in self.catalog.entries():
            if entry.error and entry.path in (*changes.added, *changes.changed):
                kept = " (its last valid version stays scheduled)" if entry.spec else ""
                self.context.say(f"invalid pipeline file {entry.path}{kept}: {entry.error}")
        self.pipelines = {s.name: s for s in self.catalog.specs()}
        self.catalog.save_snapshot(snapshot_path(self.context.settings))


class RunDispatcher(_Looping):
    """Hands queued runs to worker processes and follows their ends."""

    name = "dispatcher"

    def __init__(
        self,
        context: ServeContext,
        supervisor: RunSupervisor,
        pipelines: Callable[[], dict[str, PipelineSpec]],
        options: ServeOptions,
    ) -> None:
        super().__init__(context)
        self.supervisor = supervisor
        self.pipelines = pipelines
        self.interval_s = options.dispatch_s
        self.idle_interval_s = max(options.dispatch_s, options.dispatch_idle_s)
        self.stop_grace_s = options.stop_grace_s
        #: whether the last look saw runs queued or running (or held any): looks are then
        #: every ``dispatch_s``, else every ``dispatch_idle_s``
        self.busy = True
        self.refollow_after_s = options.refollow_after_s
        #: runs on Airflow whose follower lost track, and when to follow each again
        #: (on time.monotonic())
        self.refollow_at: dict[str, float] = {}

    def pause(self) -> bool:
        """Wait ``dispatch_s`` (``dispatch_idle_s`` when the last look saw no run), or less
        when runs were queued (by a pass, the API or the dashboard); True when stopping."""
        self.context.runs_queued.wait(self.interval_s if self.busy else self.idle_interval_s)
        return self.context.stopping.is_set()

    def step(self) -> None:
        # cleared before the store is read: a run queued from now on wakes the next pause
        self.context.runs_queued.clear()
        active = self.submit_startable()
        self.submit_refollows()
        ends = self.supervisor.poll()
        for end in ends:
            self.on_end(end.run_id, end.exit_code)
        if ends:
            self.context.runs_ended.set()
        self.busy = bool(
            active or ends or self.refollow_at or self.supervisor.running or self.supervisor.waiting
        )

    def submit_refollows(self) -> None:
        """Follow again the runs on Airflow whose follower lost track, once their wait is
        over (a run that ended meanwhile, e.g. cancelled, is dropped)."""
        now = time.monotonic()
        for run_id, due in list(self.refollow_at.items()):
            if now < due:
                continue
            del self.refollow_at[run_id]
            if not self.context.store.get_run(run_id).status.is_terminal():
                self.supervisor.submit(run_id)
                self.context.say(f"following run {run_id} again")

    def submit_startable(self) -> int:
        """Submit the queued runs nobody took, oldest first, within each schedule's room;
        returns how many runs are queued or running."""
        store = self.context.store
        pipelines = self.pipelines()
        active = store.active_runs()
        running: dict[str, int] = {}
        for run in active:
            if run.triggered_by == RunTrigger.SCHEDULE.value and (
                run.status is RunStatus.RUNNING or self.supervisor.holds(run.run_id)
            ):
                running[run.pipeline] = running.get(run.pipeline, 0) + 1
        for run in sorted(active, key=_queue_order):
            if not _waits_here(run) or self.supervisor.holds(run.run_id):
                continue
            if run.triggered_by == RunTrigger.SCHEDULE.value:
                spec = pipelines.get(run.pipeline)
                count = running.get(run.pipeline, 0)
                if not may_start(spec.schedule if spec else None, count):
                    continue
                running[run.pipeline] = count + 1
            self.supervisor.submit(run.run_id)
        return len(active)

    def on_end(self, run_id: str, exit_code: int) -> None:
        """Say how a run ended; pause its schedule after too many failures in a row."""
        store = self.context.store
        run = store.get_run(run_id)
        if exit_code == EXIT_FOLLOW_LOST and not run.status.is_terminal():
            self.refollow_at[run_id] = time.monotonic() + self.refollow_after_s
            self.context.say(
                f"lost track of run {run_id} of {run.pipeline} on {run.executor} "
                f"({run.error}); following it again in {self.refollow_after_s:.0f}s"
            )
            return
        if not run.status.is_terminal() and not self.context.stopping.is_set():
            # The worker died (killed, out of memory): fail the run, resumable by hand.
            self.context.service.reap()
            run = store.get_run(run_id)
        self.context.say(f"run {run_id} of {run.pipeline} ended {run.status.value}")
        spec = self.pipelines().get(run.pipeline)
        failed = run.status is RunStatus.FAILED and spec is not None
        if failed and pause_after_failures(store, spec):  # type: ignore[arg-type]
            self.context.say(f"{run.pipeline}: schedule paused after repeated failures")

    def finish(self) -> None:
        self.supervisor.stop(grace_s=self.stop_grace_s)


class RetentionLoop(_Looping):
    """Deletes ended runs older than ``retention_s`` (files, then rows: see
    :mod:`batchpilot.monitor.retention`) when ``serve`` starts, then every
    :data:`RETENTION_EVERY` by the context's clock. A clean that fails is said and
    tried again a minute later; two ``serve`` processes on one store never delete a run
    twice (each run's rows go in one conditional transaction)."""

    name = "retention"
    interval_s = 60.0

    def __init__(self, context: ServeContext, retention_s: float, keep_last: int = 0) -> None:
        super().__init__(context)
        self.policy = RetentionPolicy(timedelta(seconds=retention_s), keep_last=keep_last)
        #: when the next clean is due (None: at the first step)
        self.next_clean_at: datetime | None = None

    def step(self) -> None:
        now = self.context.clock.now()
        if self.next_clean_at is not None and now < self.next_clean_at:
            return
        report = clean_runs(
            self.context.store,
            self.policy,
            deleters=default_deleters(self.context.settings),
            now=now,
        )
        self.next_clean_at = now + RETENTION_EVERY
        if report.runs:
            self.context.say(
                f"retention: deleted {len(report.runs)} runs that ended before "
                f"{report.cutoff:%Y-%m-%d %H:%M} UTC"
            )


def _waits_here(run: ActiveRunRecord) -> bool:
    """A queued run for ``serve``: unowned, not a backfill's (backfill drives its own), and
    local or queued for a remote executor but not started there yet (the API's ``"on":
    "airflow"``; a run ``batchpilot run --on airflow`` started is followed by that command)."""
    return (
        run.status is RunStatus.QUEUED
        and run.owner is None
        and (run.executor == "local" or run.external_id is None)
        and run.triggered_by != RunTrigger.BACKFILL.value
    )


def _queue_order(run: ActiveRunRecord) -> tuple[object, ...]:
    return (run.slot or run.created_at, run.created_at, run.run_id)


class ServeProcess:
    """``serve``: recover dead runs, start the components, stop them in reverse order."""

    def __init__(
        self,
        options: ServeOptions,
        context: ServeContext,
        *,
        extra_components: Sequence[Component] = (),
    ) -> None:
        self.options = options
        self.context = context
        catalog = PipelineCatalog(options.pipelines, settings=context.settings)
        catalog.seed_from_snapshot(snapshot_path(context.settings))
        self.scheduler = SchedulerLoop(context, catalog, options)
        self.supervisor = RunSupervisor(
            context.settings, max_runs=options.max_runs, store_migrated=True
        )
        self.dispatcher = RunDispatcher(
            context, self.supervisor, lambda: self.scheduler.pipelines, options
        )
        self.components: list[Component] = [self.scheduler, self.dispatcher, *extra_components]
        if context.settings.retention_s is not None:
            self.components.append(
                RetentionLoop(
                    context,
                    context.settings.retention_s,
                    keep_last=context.settings.retention_keep_last,
                )
            )

    def start(self) -> None:
        """Read the catalog (raises :class:`SpecError` for a missing folder), act on dead
        runs, and start every component."""
        self.scheduler.refresh_catalog()
        self.recover_dead_runs()
        self.follow_remote_runs()
        for component in self.components:
            component.start()

    def follow_remote_runs(self) -> list[str]:
        """Attach a follower (a worker) to every run the store shows in flight on a remote
        executor (Airflow): its follower stopped with the last ``serve``. Returns their ids."""
        followed = []
        for run in self.context.service.remote_runs_in_flight():
            if self.supervisor.submit(run.run_id):
                followed.append(run.run_id)
                self.context.say(
                    f"following run {run.run_id} of {run.pipeline} on {run.executor} again "
                    f"(its follower stopped with the last serve; it is {run.status.value})"
                )
        return followed

    def recover_dead_runs(self) -> list[str]:
        """Runs whose process died: resumed by a worker (``resume``) or failed, resumable
        by hand (``reap``). Returns their ids. Runs on a remote executor did not die with a
        process: :meth:`follow_remote_runs` follows them again."""
        service = self.context.service
        if self.options.on_dead_runs is DeadRunPolicy.REAP:
            reaped = [r.run_id for r in service.reap()]
            for run_id in reaped:
                self.context.say(f"reaped run {run_id} (its process had died)")
            return reaped
        dead = [r.run_id for r in service.dead_runs() if r.executor == LOCAL]
        for run_id in dead:
            self.supervisor.submit(run_id)
            self.context.say(f"resuming run {run_id} (its process had died)")
        return dead

    def stop(self) -> None:
        """Stop claiming, stop the workers (SIGTERM; their runs stay resumable), return."""
        self.context.stopping.set()
        self.context.runs_queued.set()  # the dispatcher's wait ends now
        self.context.runs_ended.set()  # and the monitor's
        for component in reversed(self.components):
            component.stop()


__all__ = [
    "DISPATCH_IDLE_S",
    "DISPATCH_S",
    "REFOLLOW_AFTER_S",
    "RETENTION_EVERY",
    "TICK_S",
    "Component",
    "DeadRunPolicy",
    "RetentionLoop",
    "RunDispatcher",
    "SchedulerLoop",
    "ServeContext",
    "ServeOptions",
    "ServeProcess",
]
