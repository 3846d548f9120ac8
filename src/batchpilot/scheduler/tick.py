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
from datetime import datetime, timedelta

from batchpilot.clock import Clock
from batchpilot.engine import new_run_id, queued_run
from batchpilot.errors import RunStateError
from batchpilot.scheduler.jitter import jitter_delay
from batchpilot.scheduler.policies import ActiveRuns, consecutive_failures, plan_slots
from batchpilot.scheduler.slots import Slot, latest_slot, next_slot
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.schedule import ScheduleSpec
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import ActiveRunRecord, RunRecord, RunStore, SlotClaimRequest

#: Cancels a queued or running run (``RunService.cancel``, or a request to its process).
CancelRun = Callable[[RunRecord | ActiveRunRecord], None]

#: Slot claims written per transaction (each claim with its run): a pass of 500 due slots
#: is 10 transactions, not 500, and a kill mid-pass still leaves whole claims only.
CLAIMS_PER_TRANSACTION = 50


@dataclass
class TickReport:
    """What one pass did: runs created, slots passed over, missed slots recorded,
    runs cancelled to make room, schedules auto-paused."""

    created: list[str] = field(default_factory=list)
    passed_over: dict[str, Slot] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Upcoming:
    schedule: ScheduleSpec
    last: datetime | None
    at: datetime | None  # the next slot; None: the schedule has no further slot
    due_at: datetime | None  # ``at`` plus the slot's jitter


class NextSlots:
    """Each schedule's next slot, remembered from one pass to the next.

    A pass skips a schedule whose next slot is still ahead without computing its
    slots again, for as long as the schedule (the same object: a changed file is a
    new one) and its last handled slot in the store stay the same; ``serve``
    sleeps until :meth:`earliest_due`. Not shared between threads.
    """

    def __init__(self) -> None:
        self._upcoming: dict[str, _Upcoming] = {}

    def still_ahead(
        self, pipeline: str, schedule: ScheduleSpec, last: datetime | None, now: datetime
    ) -> bool:
        """True when no slot of the schedule can be due at ``now`` (its next slot, as
        remembered for this schedule and last slot, comes later)."""
        known = self._upcoming.get(pipeline)
        if known is None or known.schedule is not schedule or known.last != last:
            return False
        return known.at is None or now < known.at

    def remember(
        self, pipeline: str, schedule: ScheduleSpec, last: datetime | None, now: datetime
    ) -> None:
        """Note the next slot after ``last`` (a schedule never run: after ``now``, unless a
        slot is due already)."""
        if last is None and latest_slot(schedule, now) is not None:
            self._upcoming.pop(pipeline, None)  # due, or held back by jitter: look next pass
            return
        upcoming = next_slot(schedule, last if last is not None else now)
        at = upcoming.at if upcoming is not None else None
        due_at = None
        if at is not None:
            due_at = at + timedelta(seconds=jitter_delay(pipeline, at, schedule.jitter_s))
        self._upcoming[pipeline] = _Upcoming(schedule, last, at, due_at)

    def keep_only(self, pipelines: set[str]) -> None:
        """Forget the schedules not in ``pipelines`` (removed, paused)."""
        if len(pipelines) != len(self._upcoming) or not pipelines.issuperset(self._upcoming):
            self._upcoming = {k: v for k, v in self._upcoming.items() if k in pipelines}

    def earliest_due(self) -> datetime | None:
        """When the soonest remembered slot falls due (jitter included); None if none."""
        return min((u.due_at for u in self._upcoming.values() if u.due_at), default=None)


def active_schedule_runs(store: RunStore) -> dict[str, list[ActiveRunRecord]]:
    """Each pipeline's runs made by its schedule that have not ended, oldest slot first
    (backfill and manual runs never count against ``max_active_runs``)."""
    active: dict[str, list[ActiveRunRecord]] = {}
    for run in store.active_runs():
        if run.triggered_by == RunTrigger.SCHEDULE.value:
            active.setdefault(run.pipeline, []).append(run)
    for runs in active.values():
        runs.sort(key=lambda r: (r.slot or r.created_at, r.run_id))
    return active


class _Claims:
    """Slot claims collected during a pass, written :data:`CLAIMS_PER_TRANSACTION` at a time."""

    def __init__(self, store: RunStore, report: TickReport) -> None:
        self.store = store
        self.report = report
        self.pending: list[SlotClaimRequest] = []

    def add(self, request: SlotClaimRequest) -> None:
        self.pending.append(request)
        if len(self.pending) >= CLAIMS_PER_TRANSACTION:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        requests, self.pending = self.pending, []
        for claim in self.store.schedules.claim_slots(requests):
            if claim.created:
                self.report.created.append(claim.run_id)


def run_tick(
    pipelines: Iterable[PipelineSpec],
    store: RunStore,
    clock: Clock,
    *,
    cancel: CancelRun | None = None,
    next_slots: NextSlots | None = None,
) -> TickReport:
    """Claim the due slots of every scheduled, unpaused pipeline (see the module).

    With ``next_slots`` (kept from pass to pass), schedules whose next slot is
    still ahead are skipped at the cost of a look-up.
    """
    report = TickReport()
    now = clock.now()
    states = {s.pipeline: s for s in store.schedules.schedule_states()}
    active: dict[str, list[ActiveRunRecord]] | None = None  # read once a schedule is due
    claims = _Claims(store, report)
    seen: set[str] = set()
    for spec in pipelines:
        schedule = spec.schedule
        state = states.get(spec.name)
        if schedule is None or (state is not None and state.paused):
            continue
        seen.add(spec.name)
        last = state.last_slot if state else None
        if next_slots is not None and next_slots.still_ahead(spec.name, schedule, last, now):
            continue
        if active is None:
            active = active_schedule_runs(store)
        runs = active.get(spec.name, [])
        live = [r for r in runs if not r.cancel_requested]
        plan = plan_slots(
            spec.name,
            schedule,
            last=last,
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
            run = queued_run(
                spec, run_id=new_run_id(now), ds=slot.ds, slot=slot.at,
                triggered_by=RunTrigger.SCHEDULE,
            )  # fmt: skip
            first_missed = missed if index == 0 else ()
            claims.add(SlotClaimRequest(run, True, tuple(first_missed), catchup))
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
        if next_slots is not None:
            handled = plan.advance_to
            next_slots.remember(spec.name, schedule, handled.at if handled else last, now)
    claims.flush()
    if next_slots is not None:
        next_slots.keep_only(seen)
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

    def cancel(run: RunRecord | ActiveRunRecord) -> None:
        if run.status is RunStatus.RUNNING:
            store.request_cancel(run.run_id)
            return
        with suppress(RunStateError):  # it ended, or a worker took it: nothing to cancel
            service_cancel(run.run_id)

    return cancel


__all__ = [
    "CLAIMS_PER_TRANSACTION",
    "CancelRun",
    "NextSlots",
    "TickReport",
    "active_schedule_runs",
    "cancel_by_request",
    "pause_after_failures",
    "run_tick",
]
