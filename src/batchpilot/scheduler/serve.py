"""``batchpilot serve``: one long-running process made of components sharing one context.

The components share a :class:`~batchpilot.scheduler.components.ServeContext` (the
settings, one state store, one clock, the engine's services, a stop event) and each
has ``start()`` and ``stop()`` (:mod:`batchpilot.scheduler.components`):

- :class:`SchedulerLoop` re-reads the pipeline catalog (every
  :data:`CATALOG_POLL_S`) and runs one scheduling pass (:func:`run_tick`) at
  the instant the soonest slot falls due, and at least every ``tick_s`` (for
  the triggers); it remembers each schedule's next slot (:class:`NextSlots`),
  so a pass with nothing due costs a look-up per schedule;
- :class:`~batchpilot.scheduler.dispatcher.RunDispatcher` hands queued runs to a
  :class:`RunSupervisor` (worker processes, at most ``max_runs``), holding a
  schedule's runs back while ``max_active_runs`` of them run, and pauses a schedule
  after its failures.
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

import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from batchpilot.engine.executors import LOCAL
from batchpilot.monitor.retention import RetentionPolicy, clean_runs, default_deleters
from batchpilot.scheduler.catalog import (
    CatalogEntry,
    PipelineCatalog,
    snapshot_path,
)
from batchpilot.scheduler.components import (
    Component,
    DeadRunPolicy,
    LoopingComponent,
    ServeContext,
    ServeOptions,
)
from batchpilot.scheduler.dispatcher import RunDispatcher
from batchpilot.scheduler.supervisor import RunSupervisor
from batchpilot.scheduler.tick import (
    NextSlots,
    cancel_by_request,
    run_tick,
)
from batchpilot.scheduler.triggers import TriggerWatches, run_trigger_tick
from batchpilot.spec.model import PipelineSpec

#: A pass for a slot starts this long after the slot's instant (the two clocks that time a
#: wait and read the time may differ by a little), and waits are never shorter than
#: :data:`MIN_WAIT_S`.
SLOT_MARGIN_S = 0.002
MIN_WAIT_S = 0.005
#: How often ``serve`` cleans old runs when a retention is set.
RETENTION_EVERY = timedelta(days=1)


class SchedulerLoop(LoopingComponent):
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


class RetentionLoop(LoopingComponent):
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


__all__ = ["RETENTION_EVERY", "RetentionLoop", "SchedulerLoop", "ServeProcess"]
