"""What a schedule does when slots fall due: pure decisions, tested without a store.

:func:`plan_slots` reads the schedule, the last slot it handled, the time and
its active runs, and returns a :class:`SlotPlan`: the slots to claim (a run
each), how far to move the last slot without running anything, the slots that
were missed (due longer than :data:`LATE_AFTER_S` ago when seen), and how many
active runs to cancel to make room.

Rules (the README's "Running unattended" states them for users):

- a slot is due once ``slot + jitter`` has passed; the newest due slot is on
  time when it is younger than :data:`LATE_AFTER_S`, every other due slot is
  missed (``serve`` was down, the schedule paused, the machine asleep);
- ``catchup``: ``all`` claims every due slot, oldest first; ``last`` only the
  newest; ``none`` only the newest if on time. Missed slots are listed in one
  "missed while down" record per catch-up, whatever the policy;
- a pipeline seen for the first time runs only its newest due slot (or, with
  ``catchup: all`` and a ``start_date``, every slot since the start date);
- ``overlap``, when the schedule's active runs (queued or running) already reach
  ``max_active_runs``: ``skip`` claims nothing now; ``buffer_one`` claims the
  newest slot only while no run waits; ``buffer_all`` claims every slot (their
  runs wait, queued); ``cancel_running`` cancels enough active runs, oldest
  first, and claims; ``allow`` claims and ignores ``max_active_runs``;
- runs wait for room: at most ``max_active_runs`` of a schedule's runs run at
  once (except under ``allow``), oldest slot first (:func:`may_start`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from batchpilot.scheduler.jitter import jitter_delay
from batchpilot.scheduler.slots import Slot, iter_slots, latest_slot
from batchpilot.spec.schedule import CatchupPolicy, OverlapPolicy, ScheduleSpec

#: A due slot older than this when the scheduler first sees it was missed.
LATE_AFTER_S = 60.0
#: At most this many slots are looked at in one pass (a week of a minute cron is 10,080).
MAX_SLOTS_PER_PASS = 1000


@dataclass(frozen=True)
class ActiveRuns:
    """A schedule's runs not yet ended: ``running`` ones, and ``waiting`` (queued) ones."""

    running: int = 0
    waiting: int = 0

    @property
    def total(self) -> int:
        """Runs of the schedule queued or running."""
        return self.running + self.waiting


@dataclass(frozen=True)
class SlotPlan:
    """What one pass does for one schedule."""

    claim: tuple[Slot, ...] = ()
    skip_to: Slot | None = None
    missed: tuple[Slot, ...] = field(default=())
    cancel_active: int = 0

    @property
    def advance_to(self) -> Slot | None:
        """The newest slot this plan handles (claimed or skipped)."""
        handled = [*self.claim, *([self.skip_to] if self.skip_to else [])]
        return max(handled) if handled else None


def due_slots(
    pipeline: str, schedule: ScheduleSpec, last: datetime | None, now: datetime
) -> list[Slot]:
    """The slots after ``last`` whose ``slot + jitter`` has passed at ``now``, oldest
    first (at most :data:`MAX_SLOTS_PER_PASS`, the newest always among them).

    For a schedule never run (``last`` None): its newest due slot, or with
    ``catchup: all`` and a ``start_date`` every slot since that date.
    """

    def is_due(slot: Slot) -> bool:
        delay = jitter_delay(pipeline, slot.at, schedule.jitter_s)
        return slot.at + timedelta(seconds=delay) <= now

    newest = latest_slot(schedule, now)
    if newest is not None and not is_due(newest):
        newest = latest_slot(schedule, newest.at - timedelta(microseconds=1))
    if newest is None or (last is not None and newest.at <= last):
        return []
    if last is None and (schedule.catchup is not CatchupPolicy.ALL or not schedule.start_date):
        return [newest]
    start = schedule.start_date
    after = last if last is not None else start - timedelta(microseconds=1)  # type: ignore[operator]
    found: list[Slot] = []
    for slot in iter_slots(schedule, after):
        if slot.at >= newest.at or len(found) >= MAX_SLOTS_PER_PASS - 1:
            break
        found.append(slot)
    return [*found, newest]


def plan_slots(
    pipeline: str,
    schedule: ScheduleSpec,
    *,
    last: datetime | None,
    now: datetime,
    active: ActiveRuns,
) -> SlotPlan:
    """Decide one pass of one schedule (see the module's rules)."""
    due = due_slots(pipeline, schedule, last, now)
    if not due:
        return SlotPlan()
    late_before = now - timedelta(seconds=LATE_AFTER_S)
    missed = tuple(
        s for s in due if s is not due[-1] or _started_late(pipeline, schedule, s, late_before)
    )
    if last is None:
        missed = ()  # a new schedule missed nothing
    newest = due[-1]
    if schedule.catchup is CatchupPolicy.ALL:
        wanted: tuple[Slot, ...] = tuple(due)
    elif schedule.catchup is CatchupPolicy.LAST or newest not in missed:
        wanted = (newest,)
    else:
        wanted = ()
    claim, cancel = _apply_overlap(schedule, wanted, active)
    # Every due slot is handled in this pass: claimed, or passed over (the last slot moves on).
    skip_to = None if newest in claim else newest
    return SlotPlan(claim=claim, skip_to=skip_to, missed=missed, cancel_active=cancel)


def _started_late(pipeline: str, schedule: ScheduleSpec, slot: Slot, late_before: datetime) -> bool:
    due_at = slot.at + timedelta(seconds=jitter_delay(pipeline, slot.at, schedule.jitter_s))
    return due_at < late_before


def _apply_overlap(
    schedule: ScheduleSpec, wanted: tuple[Slot, ...], active: ActiveRuns
) -> tuple[tuple[Slot, ...], int]:
    """The slots to claim now and the active runs to cancel, per ``overlap``."""
    if not wanted or active.total < schedule.max_active_runs:
        return wanted, 0
    policy = schedule.overlap
    if policy is OverlapPolicy.SKIP:
        return (), 0
    if policy is OverlapPolicy.BUFFER_ONE:
        return ((wanted[-1],) if active.waiting == 0 else ()), 0
    if policy is OverlapPolicy.CANCEL_RUNNING:
        return wanted, active.total - schedule.max_active_runs + 1
    return wanted, 0  # buffer_all and allow: claim; the runs wait (buffer_all) or run (allow)


def may_start(schedule: ScheduleSpec | None, running: int) -> bool:
    """Whether one more queued run of a schedule may start with ``running`` of its runs
    already running (always, for runs of a pipeline without schedule or under ``allow``)."""
    if schedule is None or schedule.overlap is OverlapPolicy.ALLOW:
        return True
    return running < schedule.max_active_runs


def consecutive_failures(statuses_newest_first: list[str]) -> int:
    """How many ended runs failed in a row, counting back from the newest."""
    count = 0
    for status in statuses_newest_first:
        if status != "failed":
            break
        count += 1
    return count


__all__ = [
    "LATE_AFTER_S",
    "MAX_SLOTS_PER_PASS",
    "ActiveRuns",
    "SlotPlan",
    "consecutive_failures",
    "due_slots",
    "may_start",
    "plan_slots",
]
