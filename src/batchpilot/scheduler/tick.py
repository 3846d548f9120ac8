"""One scheduling pass: claim the due slots of every schedule through the state store.

:func:`run_tick` is a function of (pipelines, store, clock): it reads each
schedule's state and active runs, decides with :func:`plan_slots`, and writes
each decision in one transaction of :class:`~batchpilot.store.schedules.ScheduleStore`
(a slot's claim creates its run; a passed-over slot moves the last slot on).
Killed anywhere, it leaves each slot claimed with its run or not at all; run
again (by this process, a restarted one or a second ``serve``), it claims what
is left and nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field

from batchpilot.engine import new_run_id, queued_run
from batchpilot.errors import RunStateError
from batchpilot.scheduler.clock import Clock
from batchpilot.scheduler.policies import ActiveRuns, consecutive_failures, plan_slots
from batchpilot.scheduler.slots import Slot
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import RunRecord, RunStore

#: Cancels a queued or running run (``RunService.cancel``, or a request to its process).
CancelRun = Callable[[RunRecord], None]


@dataclass
class TickReport:
    """What one pass did: runs created, slots passed over, missed slots recorded,
    runs cancelled to make room, schedules auto-paused."""

    created: list[str] = field(default_factory=list)
    passed_over: dict[str, Slot] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)


def active_schedule_runs(store: RunStore) -> dict[str, list[RunRecord]]:
    """Each pipeline's runs made by its schedule that have not ended, oldest slot first
    (backfill and manual runs never count against ``max_active_runs``)."""
    active: dict[str, list[RunRecord]] = {}
    for run in store.runs_in_status([RunStatus.QUEUED, RunStatus.RUNNING]):
        if run.triggered_by == RunTrigger.SCHEDULE.value:
            active.setdefault(run.pipeline, []).append(run)
    for runs in active.values():
        runs.sort(key=lambda r: (r.slot or r.created_at, r.run_id))
    return active


def run_tick(
    pipelines: Iterable[PipelineSpec],
    store: RunStore,
    clock: Clock,
    *,
    cancel: CancelRun | None = None,
) -> TickReport:
    """Claim the due slots of every scheduled, unpaused pipeline (see the module)."""
    report = TickReport()
    now = clock.now()
    states = {s.pipeline: s for s in store.schedules.schedule_states()}
    active = active_schedule_runs(store)
    for spec in pipelines:
        schedule = spec.schedule
        state = states.get(spec.name)
        if schedule is None or (state is not None and state.paused):
            continue
        runs = active.get(spec.name, [])
        live = [r for r in runs if not r.cancel_requested]
        plan = plan_slots(
            spec.name,
            schedule,
            last=state.last_slot if state else None,
            now=now,
            active=ActiveRuns(
                running=sum(r.status is RunStatus.RUNNING for r in live),
                waiting=sum(r.status is RunStatus.QUEUED for r in live),
            ),
        )
        for run in live[: plan.cancel_active]:
            if cancel is not None:
                cancel(run)
                report.cancelled.append(run.run_id)
        missed = [s.at for s in plan.missed]
        catchup = schedule.catchup.value
        for index, slot in enumerate(sorted(plan.claim)):
            claim = store.schedules.claim_slot(
                queued_run(
                    spec,
                    run_id=new_run_id(now),
                    ds=slot.ds,
                    slot=slot.at,
                    triggered_by=RunTrigger.SCHEDULE,
                ),
                advance_schedule=True,
                missed=missed if index == 0 else (),
                catchup=catchup,
            )
            if claim.created:
                report.created.append(claim.run_id)
        if plan.skip_to is not None:
            store.schedules.skip_slots(
                spec.name,
                last_slot=plan.skip_to.at,
                missed=missed if not plan.claim else (),
                catchup=catchup,
            )
            report.passed_over[spec.name] = plan.skip_to
        if missed:
            report.missed[spec.name] = len(missed)
    return report


def pause_after_failures(store: RunStore, spec: PipelineSpec) -> bool:
    """Pause the schedule when its last ``max_consecutive_failures`` ended runs all
    failed; True when it paused it now."""
    schedule = spec.schedule
    if schedule is None or schedule.max_consecutive_failures is None:
        return False
    limit = schedule.max_consecutive_failures
    ended = [
        r
        for r in store.list_runs(limit=limit * 4 + 20, pipeline=spec.name)
        if r.triggered_by == RunTrigger.SCHEDULE.value and r.status.is_terminal()
    ]
    ended.sort(key=lambda r: r.slot or r.created_at, reverse=True)
    failures = consecutive_failures([r.status.value for r in ended])
    if failures < limit or store.schedules.schedule_state(spec.name).paused:
        return False
    store.schedules.set_paused(
        spec.name,
        True,
        reason=f"paused after {failures} failed runs in a row (last: {ended[0].run_id}); "
        f"unpause with: batchpilot unpause {spec.name}",
    )
    return True


def cancel_by_request(store: RunStore, service_cancel: Callable[[str], object]) -> CancelRun:
    """A :data:`CancelRun` that never blocks a pass: a queued run is cancelled at once
    (``service_cancel``), a running one is asked to stop (its process notices)."""

    def cancel(run: RunRecord) -> None:
        if run.status is RunStatus.RUNNING:
            store.request_cancel(run.run_id)
            return
        with suppress(RunStateError):  # it ended, or a worker took it: nothing to cancel
            service_cancel(run.run_id)

    return cancel


__all__ = [
    "CancelRun",
    "TickReport",
    "active_schedule_runs",
    "cancel_by_request",
    "pause_after_failures",
    "run_tick",
]
