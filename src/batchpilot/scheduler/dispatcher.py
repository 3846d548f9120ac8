"""The dispatcher of ``batchpilot serve``: queued runs to worker processes.

:class:`RunDispatcher` hands the runs queued for ``serve`` (by a scheduling pass, a
trigger, the API, the dashboard) to a :class:`RunSupervisor`, oldest slot first, holding
a schedule's runs back while ``max_active_runs`` of them run; it follows each worker's
end (a died worker's run is reaped, a schedule paused after its failures) and follows
again, :data:`~batchpilot.scheduler.components.REFOLLOW_AFTER_S` later, a run on Airflow
whose follower lost track of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from batchpilot.scheduler.components import LoopingComponent, ServeContext, ServeOptions
from batchpilot.scheduler.policies import may_start
from batchpilot.scheduler.supervisor import RunSupervisor
from batchpilot.scheduler.tick import pause_after_failures
from batchpilot.scheduler.worker import EXIT_FOLLOW_LOST
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import ActiveRunRecord


class RunDispatcher(LoopingComponent):
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


__all__ = ["RunDispatcher"]
