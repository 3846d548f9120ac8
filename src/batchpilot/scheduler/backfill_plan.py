"""What a backfill does with each slot: a pure decision from the slot's claim and ``--rerun``.

=====================  ==========  ==========  ==========
the slot's claim       ``failed``  ``all``     ``none``
                       (default)
=====================  ==========  ==========  ==========
never claimed          run         run         run
run succeeded          skip        rerun       skip
run failed/cancelled   rerun       rerun       skip
(or purged)
run queued/running     resume      resume      resume
=====================  ==========  ==========  ==========

A run left queued or running (by a killed backfill, or one ``serve`` drives)
is never doubled: it is resumed (or followed, when a live process drives it).
So is a run that an interrupted backfill stopped itself (Ctrl-C, SIGTERM leave it
``failed``, resumable), when that backfill is continued
(:func:`resume_interrupted`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from batchpilot.scheduler.slots import Slot
from batchpilot.states import RunStatus
from batchpilot.store.schedule_records import SlotClaimRecord


class RerunPolicy(StrEnum):
    """``--rerun``: which slots that ran before run again."""

    failed = "failed"
    all = "all"
    none = "none"


class SlotAction(StrEnum):
    """What the backfill does with one slot."""

    RUN = "run"  # never claimed: claim it with a new run
    RERUN = "rerun"  # claimed, ended: a new run replaces the slot's run
    RESUME = "resume"  # its run has not ended: drive (or follow) that run
    SKIP = "skip"  # ran before and --rerun leaves it


@dataclass(frozen=True)
class SlotPlan:
    """One slot of a backfill, what happens to it, and the run that holds it now."""

    slot: Slot
    action: SlotAction
    run_id: str | None = None
    status: RunStatus | None = None

    @property
    def reason(self) -> str:
        """Why, in words (for ``--dry-run``)."""
        if self.status is None:
            return "never run"
        return f"run {self.run_id} {self.status.value}"


def decide(status: RunStatus | None, rerun: RerunPolicy) -> SlotAction:
    """The action for a slot whose current run has ``status`` (None: never claimed)."""
    if status is None:
        return SlotAction.RUN
    if status is RunStatus.UNKNOWN:  # its run was purged: it ended, how is not known
        return SlotAction.SKIP if rerun is RerunPolicy.none else SlotAction.RERUN
    if not status.is_terminal():
        return SlotAction.RESUME
    if status is RunStatus.SUCCESS:
        return SlotAction.RERUN if rerun is RerunPolicy.all else SlotAction.SKIP
    return SlotAction.SKIP if rerun is RerunPolicy.none else SlotAction.RERUN


def plan_backfill(
    slots: Iterable[Slot], claims: Iterable[SlotClaimRecord], rerun: RerunPolicy
) -> list[SlotPlan]:
    """Each slot (in the order given) with its action, from the pipeline's slot claims."""
    by_slot: Mapping[datetime, SlotClaimRecord] = {c.slot: c for c in claims}
    plans = []
    for slot in slots:
        claim = by_slot.get(slot.at)
        status = claim.run_status if claim is not None else None
        plans.append(
            SlotPlan(
                slot,
                decide(status, rerun),
                run_id=claim.run_id if claim is not None else None,
                status=status,
            )
        )
    return plans


def resume_interrupted(plans: Iterable[SlotPlan], interrupted: set[str]) -> list[SlotPlan]:
    """The plans with each slot whose run was stopped by its own backfill's interruption
    (Ctrl-C, SIGTERM; left ``failed``, resumable) resumed in that run, whatever
    ``--rerun`` says: continuing a backfill finishes what it started."""
    return [
        SlotPlan(p.slot, SlotAction.RESUME, p.run_id, p.status)
        if p.run_id in interrupted and p.status is RunStatus.FAILED
        else p
        for p in plans
    ]


__all__ = [
    "RerunPolicy",
    "SlotAction",
    "SlotPlan",
    "decide",
    "plan_backfill",
    "resume_interrupted",
]
