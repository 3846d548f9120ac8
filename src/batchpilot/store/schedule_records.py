"""Read-only views of the scheduler's rows (slot claims, schedule state, missed slots)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchpilot.states import RunStatus
from batchpilot.store.records import aware


@dataclass(frozen=True)
class RunClaim:
    """The outcome of claiming a slot (or an idempotency key): the run that holds it, and
    whether this call created that run (False: it existed already, nothing was written)."""

    run_id: str
    created: bool


@dataclass(frozen=True)
class SlotClaimRecord:
    """A claimed slot, with its current run and that run's status (UNKNOWN once purged)."""

    pipeline: str
    slot: datetime
    run_id: str
    triggered_by: str
    claimed_at: datetime
    run_status: RunStatus


@dataclass(frozen=True)
class ScheduleState:
    """A pipeline's schedule as the scheduler left it."""

    pipeline: str
    paused: bool = False
    paused_reason: str | None = None
    paused_at: datetime | None = None
    last_slot: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class MissedSlotsRecord:
    """Slots a schedule did not run when it came back after being down (or paused).

    ``slots`` lists at most :data:`MAX_LISTED_MISSED_SLOTS` of them, oldest
    first; ``slot_count`` counts them all.
    """

    id: int
    pipeline: str
    detected_at: datetime
    catchup: str
    slot_count: int
    slots: tuple[datetime, ...]
    #: when the monitor alerted on it (None: not yet)
    alerted_at: datetime | None = None


#: A missed-slots record lists this many slots at most (a minute cron down for a week misses
#: 10,080): the first ones, oldest first; ``slot_count`` has the total.
MAX_LISTED_MISSED_SLOTS = 1000


def slot_claim_record(row: Any) -> SlotClaimRecord:
    status = row["status"]
    return SlotClaimRecord(
        pipeline=row["pipeline"],
        slot=aware(row["slot"]),  # type: ignore[arg-type]
        run_id=row["run_id"],
        triggered_by=row["triggered_by"],
        claimed_at=aware(row["claimed_at"]),  # type: ignore[arg-type]
        run_status=RunStatus(status)
        if status in RunStatus._value2member_map_
        else RunStatus.UNKNOWN,
    )


def schedule_state(row: Any) -> ScheduleState:
    return ScheduleState(
        pipeline=row["pipeline"],
        paused=bool(row["paused"]),
        paused_reason=row["paused_reason"],
        paused_at=aware(row["paused_at"]),
        last_slot=aware(row["last_slot"]),
        updated_at=aware(row["updated_at"]),
    )


def missed_slots_record(row: Any) -> MissedSlotsRecord:
    return MissedSlotsRecord(
        id=row["id"],
        pipeline=row["pipeline"],
        detected_at=aware(row["detected_at"]),  # type: ignore[arg-type]
        catchup=row["catchup"],
        slot_count=row["slot_count"],
        slots=tuple(datetime.fromisoformat(s) for s in row["slots"]),
        alerted_at=aware(row["alerted_at"]),
    )


__all__ = [
    "MAX_LISTED_MISSED_SLOTS",
    "MissedSlotsRecord",
    "RunClaim",
    "ScheduleState",
    "SlotClaimRecord",
]
