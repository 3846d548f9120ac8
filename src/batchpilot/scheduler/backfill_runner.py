"""``batchpilot backfill``: one run per slot of a range, ``concurrency`` at once, resumable.

:func:`prepare_backfill` checks the request and plans each slot
(:mod:`batchpilot.scheduler.backfill_plan`) without writing anything (this is
all ``--dry-run`` does). :class:`BackfillRunner` then records the backfill
(:class:`~batchpilot.store.backfills.BackfillStore`) and works as a sliding
window: whenever fewer than ``concurrency`` runs are in flight it claims the
next slot (the claim and the run are one transaction, so a slot is never run
twice) and hands the run to a worker process
(:class:`~batchpilot.scheduler.supervisor.RunSupervisor`, warm forks of one
fork server); it looks at the workers and the store as soon as a worker exits
and at least every ``poll_s`` (0.2 s), so a run that ends is replaced at once,
never after a whole batch.

Interrupted (Ctrl-C, SIGTERM), the runner stops its workers, leaving their
runs resumable; killed, it leaves them to finish on their own. Started again
with the same pipeline and range, it continues the same backfill: slots that
succeeded are skipped by their claims, runs left queued or running are resumed
(or followed while a live process drives them). ``backfill cancel``
(:mod:`batchpilot.scheduler.backfill_cancel`) asks the runner, through the
store, to start nothing more.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from batchpilot.engine import RunService, check_queued_run, new_run_id, queued_run
from batchpilot.scheduler.backfill import backfill_slots
from batchpilot.scheduler.backfill_plan import (
    RerunPolicy,
    SlotAction,
    SlotPlan,
    plan_backfill,
    resume_interrupted,
)
from batchpilot.scheduler.slots import Slot
from batchpilot.scheduler.supervisor import RunSupervisor
from batchpilot.scheduler.tick import cancel_by_request
from batchpilot.scheduler.worker import EXIT_TAKEN
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import RunStore
from batchpilot.store.backfills import BackfillRecord, BackfillStatus, BackfillStore, range_key
from batchpilot.store.schedule_records import RunClaim

#: Seconds between two looks at the workers and the store (a free place is refilled within).
BACKFILL_POLL_S = 0.2
DEFAULT_CONCURRENCY = 4
_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True)
class BackfillRequest:
    """What the user asked for: a pipeline, a range (both ends inclusive) and options."""

    spec: PipelineSpec
    start: date | datetime
    end: date | datetime
    every: timedelta | None = None
    every_text: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    reverse: bool = False
    rerun: RerunPolicy = RerunPolicy.failed

    @property
    def range_start(self) -> str:
        """``--start`` as recorded."""
        return self.start.isoformat()

    @property
    def range_end(self) -> str:
        """``--end`` as recorded."""
        return self.end.isoformat()

    def options(self) -> dict[str, Any]:
        """The options as recorded with the backfill."""
        return {
            "concurrency": self.concurrency,
            "reverse": self.reverse,
            "rerun": self.rerun.value,
        }


@dataclass(frozen=True)
class BackfillPreview:
    """The request checked, and each slot's plan (oldest first, or newest with reverse)."""

    request: BackfillRequest
    plans: list[SlotPlan]


@dataclass
class SlotOutcome:
    """Where a slot of the backfill stands: its run and that run's status (None: not run,
    the backfill was cancelled or interrupted before it)."""

    plan: SlotPlan
    run_id: str | None = None
    status: RunStatus | None = None

    @property
    def slot(self) -> Slot:
        """The slot."""
        return self.plan.slot

    def to_dict(self) -> dict[str, Any]:
        """The slot as one entry of ``--output json``."""
        return {
            "slot": self.slot.at.isoformat(),
            "ds": self.slot.ds,
            "action": self.plan.action.value,
            "run_id": self.run_id,
            "status": self.status.value if self.status else "not_run",
        }


@dataclass
class BackfillReport:
    """A backfill's slots and how each stands; ``outcome`` is the backfill's status."""

    record: BackfillRecord
    outcomes: list[SlotOutcome]
    continued: bool = False
    outcome: BackfillStatus = BackfillStatus.RUNNING
    started_runs: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Slots by where they stand: succeeded, failed, cancelled, running, left, skipped."""
        counts = dict.fromkeys(("succeeded", "failed", "cancelled", "running", "left"), 0)
        for outcome in self.outcomes:
            counts[_bucket(outcome)] += 1
        counts["skipped"] = sum(o.plan.action is SlotAction.SKIP for o in self.outcomes)
        counts["total"] = len(self.outcomes)
        return counts

    @property
    def all_succeeded(self) -> bool:
        """True when every slot's run succeeded (now or before)."""
        return all(o.status is RunStatus.SUCCESS for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """The whole backfill as the one object of ``--output json``."""
        record = self.record
        return {
            "backfill_id": record.backfill_id,
            "pipeline": record.pipeline,
            "start": record.range_start,
            "end": record.range_end,
            "every": record.every,
            "options": record.options,
            "status": self.outcome.value,
            "continued": self.continued,
            "counts": self.counts(),
            "slots": [o.to_dict() for o in self.outcomes],
        }


def _bucket(outcome: SlotOutcome) -> str:
    status = outcome.status
    if status is RunStatus.SUCCESS:
        return "succeeded"
    if status is RunStatus.CANCELLED:
        return "cancelled"
    if status in (RunStatus.QUEUED, RunStatus.RUNNING):
        return "running"
    if status is None:
        return "left"
    return "failed"


class BackfillListener:
    """Told what a backfill does (the CLI's progress display); the default says nothing."""

    def backfill_started(self, report: BackfillReport) -> None:
        """The backfill is recorded; ``report`` holds every slot."""

    def run_started(self, outcome: SlotOutcome) -> None:
        """A slot's run was handed to a worker (or is followed)."""

    def run_ended(self, outcome: SlotOutcome) -> None:
        """A slot's run ended."""

    def waiting(self, report: BackfillReport) -> None:
        """Called at each poll while runs are in flight (to redraw)."""


def prepare_backfill(
    request: BackfillRequest, *, settings: Settings, store: RunStore
) -> BackfillPreview:
    """Check the request and plan each slot; writes nothing.

    Raises :class:`SlotRangeError` for a range with no slot (or an end before its
    start), :class:`SpecErrors` when the pipeline cannot run (steps, connections).
    """
    spec = request.spec
    slots = backfill_slots(
        spec.schedule, request.start, request.end, every=request.every, reverse=request.reverse
    )
    check_queued_run(spec, settings=settings, ds=slots[0].ds)
    low = min(s.at for s in slots)
    high = max(s.at for s in slots) + _EPSILON
    claims = store.schedules.slot_claims(spec.name, start=low, end=high)
    plans = plan_backfill(slots, claims, request.rerun)
    backfills = BackfillStore(store.engine)
    key = range_key(request.range_start, request.range_end, request.every_text)
    unfinished = backfills.find_unfinished(spec.name, key)
    if unfinished is not None:
        plans = resume_interrupted(plans, backfills.interrupted_runs(unfinished.backfill_id))
    return BackfillPreview(request, plans)


class BackfillRunner:
    """Runs a prepared backfill to its end (see the module)."""

    def __init__(
        self,
        preview: BackfillPreview,
        *,
        settings: Settings,
        store: RunStore,
        listener: BackfillListener | None = None,
        poll_s: float = BACKFILL_POLL_S,
        python: str | None = None,
    ) -> None:
        self.preview = preview
        self.request = preview.request
        self.settings = settings
        self.store = store
        self.backfills = BackfillStore(store.engine)
        self.service = RunService(settings=settings, store=store)
        self.listener = listener or BackfillListener()
        self.poll_s = poll_s
        self.supervisor = RunSupervisor(
            settings, max_runs=self.request.concurrency, python=python, store_migrated=True
        )
        self._in_flight: dict[str, SlotOutcome] = {}
        self._followed: set[str] = set()
        self._cancel_sent = False

    def run(self) -> BackfillReport:
        """Record the backfill (or continue the unfinished one of the same range) and run
        its slots; returns the report. On Ctrl-C/SIGTERM (``KeyboardInterrupt``) the
        workers are stopped, their runs left resumable, and the interrupt goes on."""
        request = self.request
        record, continued = self.backfills.start_or_continue(
            new_id=f"bf-{new_run_id()}",
            pipeline=request.spec.name,
            range_start=request.range_start,
            range_end=request.range_end,
            every=request.every_text,
            options=request.options(),
            slot_count=len(self.preview.plans),
        )
        report = BackfillReport(record, [_initial(p) for p in self.preview.plans], continued)
        self.listener.backfill_started(report)
        pending = deque(o for o in report.outcomes if o.plan.action is not SlotAction.SKIP)
        interrupted = True
        try:
            self._drive(report, pending)
            interrupted = False
        finally:
            if interrupted:
                stopped = list(self._in_flight)
                self.supervisor.stop()
                self.backfills.mark_interrupted(record.backfill_id, stopped)
        cancelled = self.backfills.get(record.backfill_id).cancel_requested
        if cancelled:
            report.outcome = BackfillStatus.CANCELLED
        elif report.all_succeeded:
            report.outcome = BackfillStatus.SUCCEEDED
        else:
            report.outcome = BackfillStatus.FAILED
        self.backfills.set_status(record.backfill_id, report.outcome)
        report.record = self.backfills.get(record.backfill_id)
        return report

    # -- the window -----------------------------------------------------------------------

    def _drive(self, report: BackfillReport, pending: deque[SlotOutcome]) -> None:
        backfill_id = report.record.backfill_id
        while pending or self._in_flight:
            if self.backfills.get(backfill_id).cancel_requested:
                pending.clear()  # those slots stay "not run"
                self._cancel_in_flight()
            while pending and len(self._in_flight) < self.request.concurrency:
                outcome = pending.popleft()
                if self._start(backfill_id, outcome):
                    report.started_runs.append(outcome.run_id or "")
                    self.listener.run_started(outcome)
                else:
                    self.listener.run_ended(outcome)
            for end in self.supervisor.poll():
                self._on_worker_end(end.run_id, end.exit_code)
            self._check_followed()
            self.listener.waiting(report)
            if pending or self._in_flight:
                self.supervisor.wait_for_end(self.poll_s)

    def _start(self, backfill_id: str, outcome: SlotOutcome) -> bool:
        """Claim (or reclaim, or pick up) the slot's run and hand it to a worker; False when
        there is nothing to run (another process's run holds the slot and has ended)."""
        plan = outcome.plan
        run_id = self._claimed_run(plan)
        run = self.store.get_run(run_id)
        outcome.run_id, outcome.status = run_id, run.status
        interrupted = plan.action is SlotAction.RESUME and run.status is RunStatus.FAILED
        if run.status.is_terminal() and not interrupted:
            return False
        self.backfills.add_run(backfill_id, run_id, plan.slot.at)
        self._in_flight[run_id] = outcome
        self.supervisor.submit(run_id)
        return True

    def _claimed_run(self, plan: SlotPlan) -> str:
        if plan.action is SlotAction.RESUME:
            assert plan.run_id is not None
            return plan.run_id
        slot = plan.slot
        run = queued_run(
            self.request.spec,
            run_id=new_run_id(),
            ds=slot.ds,
            slot=slot.at,
            triggered_by=RunTrigger.BACKFILL,
        )
        claim: RunClaim
        if plan.action is SlotAction.RERUN:
            assert plan.run_id is not None
            claim = self.store.schedules.reclaim_slot(run, replacing=plan.run_id)
        else:
            claim = self.store.schedules.claim_slot(run)
        return claim.run_id  # not ours when another process got there first: followed

    def _on_worker_end(self, run_id: str, exit_code: int) -> None:
        if exit_code == EXIT_TAKEN:  # a live process drives it (or it ended meanwhile)
            self._followed.add(run_id)
            self._check_followed()
            return
        run = self.store.get_run(run_id)
        if not run.status.is_terminal():
            self.service.reap()  # the worker died: its run fails, resumable by hand
            run = self.store.get_run(run_id)
        self._finish(run_id, run.status if run.status.is_terminal() else RunStatus.FAILED)

    def _check_followed(self) -> None:
        for run_id in list(self._followed):
            status = self.store.get_run(run_id).status
            if status.is_terminal():
                self._followed.discard(run_id)
                self._finish(run_id, status)

    def _finish(self, run_id: str, status: RunStatus) -> None:
        outcome = self._in_flight.pop(run_id, None)
        if outcome is not None:
            outcome.status = status
            self.listener.run_ended(outcome)

    def _cancel_in_flight(self) -> None:
        """Once: ask each run in flight to stop (a queued one is cancelled at once)."""
        if self._cancel_sent:
            return
        self._cancel_sent = True
        cancel = cancel_by_request(self.store, self.service.cancel)
        for run_id in list(self._in_flight):
            cancel(self.store.get_run(run_id))


def _initial(plan: SlotPlan) -> SlotOutcome:
    if plan.action is SlotAction.SKIP:
        return SlotOutcome(plan, plan.run_id, plan.status)
    return SlotOutcome(plan)


__all__ = [
    "BACKFILL_POLL_S",
    "DEFAULT_CONCURRENCY",
    "BackfillListener",
    "BackfillPreview",
    "BackfillReport",
    "BackfillRequest",
    "BackfillRunner",
    "SlotOutcome",
    "prepare_backfill",
]
