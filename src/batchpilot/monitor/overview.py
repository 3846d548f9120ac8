"""Today's jobs at a glance: the numbers the dashboard's overview and the API's ``/stats``
show, computed once, here.

Pure functions over run records (:func:`summarize_day`, :func:`is_slow`…) state the
rules; :func:`load_overview` reads the same numbers from the store's aggregates
(counts by status and each success's baseline, computed by the database), so a day
of 5,000 runs is never decoded into records, and lists the newest
:data:`JOBS_SHOWN` of its runs.

The rules, for the day ``day`` in time zone ``zone`` (a run belongs to the day it
was created in):

- **done**: the day's runs that ended (success, failed, cancelled);
- **scheduled**: the day's runs plus the schedule slots still due before midnight;
- **success rate**: successes among the runs that ended (None when none ended);
- **running**, **queued**, **failed**, **cancelled**: the day's runs in that status;
- **slow**: a successful run whose duration exceeds :data:`SLOW_FACTOR` times the
  mean duration of its pipeline's last :data:`BASELINE_RUNS` successful runs created
  before it, when there are at least :data:`MIN_BASELINE_RUNS` of them with a
  duration.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from batchpilot.scheduler.slots import Slot, slots_between
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus
from batchpilot.store import RunStore, RunSummaryRecord
from batchpilot.store.run_aggregates import SuccessBaseline
from batchpilot.store.run_queries import PastSuccess, RunFilter

#: A run as the rules read its times: one of the day's, or a past success (its baseline).
TimedRun = RunSummaryRecord | PastSuccess

SLOW_FACTOR = 2.0
BASELINE_RUNS = 10
MIN_BASELINE_RUNS = 3
#: The runs of the day the overview lists (the newest); the runs list has them all.
JOBS_SHOWN = 50


class Verdict(StrEnum):
    """How a run of the day is shown: never by colour alone, always with this word."""

    OK = "ok"
    SLOW = "slow"
    FAILED = "failed"
    RUNNING = "running"
    QUEUED = "queued"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DayWindow:
    """A calendar day in a time zone, and its bounds as UTC instants ``[start, end)``."""

    day: date
    zone: ZoneInfo
    start: datetime
    end: datetime


def day_window(day: date, zone: ZoneInfo) -> DayWindow:
    """The day ``day`` in ``zone``: from its local midnight to the next (23 or 25 hours
    on the days clocks change), as UTC instants (so that ``end - start`` is elapsed time)."""
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return DayWindow(day, zone, start, end)


def run_duration_s(run: TimedRun, now: datetime | None = None) -> float | None:
    """Seconds from the run's start to its end (to ``now`` while it runs); None before it
    started, or for an unfinished run when ``now`` is not given."""
    if run.started_at is None:
        return None
    end = run.ended_at or now
    if end is None:
        return None
    return max(0.0, (end - run.started_at).total_seconds())


class SuccessHistory:
    """One pipeline's successful runs in creation order, with their durations: the
    baseline of each of the day's runs is a slice of it found by bisection, so the
    overview costs O(runs · log history), not a sort of the history per run."""

    def __init__(self, successes: Sequence[TimedRun]) -> None:
        ordered = sorted(successes, key=_order)
        self._keys = [_order(s) for s in ordered]
        self._durations = [run_duration_s(s) for s in ordered]

    def baseline_s(self, run: RunSummaryRecord) -> float | None:
        """See :func:`baseline_s`."""
        end = bisect_left(self._keys, _order(run))
        earlier = self._durations[max(0, end - BASELINE_RUNS) : end]
        durations = [d for d in earlier if d is not None]
        if len(durations) < MIN_BASELINE_RUNS:
            return None
        return sum(durations) / len(durations)


def baseline_s(run: RunSummaryRecord, successes: Sequence[TimedRun]) -> float | None:
    """The mean duration of the last :data:`BASELINE_RUNS` successful runs of ``successes``
    (one pipeline's, any order) created before ``run``; None with fewer than
    :data:`MIN_BASELINE_RUNS` of them."""
    return SuccessHistory(successes).baseline_s(run)


def is_slow(run: RunSummaryRecord, successes: Sequence[TimedRun]) -> bool:
    """True for a successful run that took more than :data:`SLOW_FACTOR` times its
    baseline (see :func:`baseline_s`)."""
    return _is_slow(run, baseline_s(run, successes))


def _is_slow(run: RunSummaryRecord, baseline: float | None) -> bool:
    if run.status is not RunStatus.SUCCESS:
        return False
    duration = run_duration_s(run)
    return duration is not None and baseline is not None and duration > SLOW_FACTOR * baseline


def verdict(run: RunSummaryRecord, successes: Sequence[TimedRun]) -> Verdict:
    """How the run is shown in the day's table."""
    return _verdict(run, baseline_s(run, successes))


def _verdict(run: RunSummaryRecord, baseline: float | None) -> Verdict:
    if run.status is RunStatus.SUCCESS:
        return Verdict.SLOW if _is_slow(run, baseline) else Verdict.OK
    return {
        RunStatus.FAILED: Verdict.FAILED,
        RunStatus.RUNNING: Verdict.RUNNING,
        RunStatus.QUEUED: Verdict.QUEUED,
        RunStatus.CANCELLED: Verdict.CANCELLED,
    }.get(run.status, Verdict.UNKNOWN)


@dataclass(frozen=True)
class JobOfDay:
    """One run of the day with its verdict and duration (to now while it runs)."""

    run: RunSummaryRecord
    verdict: Verdict
    duration_s: float | None
    baseline_s: float | None


@dataclass(frozen=True)
class DayOverview:
    """The numbers of one day (see the module's rules). ``jobs``: the runs listed, oldest
    first (every run of the day from :func:`summarize_day`, the newest
    :data:`JOBS_SHOWN` from :func:`load_overview`); ``slow_ids``: every slow run of the
    day, oldest first."""

    day: date
    timezone: str
    jobs: tuple[JobOfDay, ...]
    upcoming: int
    done: int
    scheduled: int
    success: int
    failed: int
    running: int
    queued: int
    cancelled: int
    slow: int
    success_rate: float | None
    slow_ids: tuple[str, ...] = ()

    @property
    def runs(self) -> int:
        """How many runs the day holds."""
        return self.scheduled - self.upcoming

    def slow_run_ids(self) -> list[str]:
        """The ids of the day's slow runs, oldest first."""
        return list(self.slow_ids)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the API's ``/stats``)."""
        return {
            "day": self.day.isoformat(),
            "timezone": self.timezone,
            "done": self.done,
            "scheduled": self.scheduled,
            "upcoming": self.upcoming,
            "success": self.success,
            "failed": self.failed,
            "running": self.running,
            "queued": self.queued,
            "cancelled": self.cancelled,
            "slow": self.slow,
            "success_rate": self.success_rate,
        }


def summarize_day(
    window: DayWindow,
    runs: Sequence[TimedRun],
    successes: Mapping[str, Sequence[TimedRun]],
    *,
    upcoming: int = 0,
    now: datetime | None = None,
) -> DayOverview:
    """The day's numbers from its runs (``runs``: those created in ``window``), each
    pipeline's recent successful runs (``successes``, see :func:`baseline_s`) and the
    count of schedule slots still due today (``upcoming``)."""
    histories = {pipeline: SuccessHistory(found) for pipeline, found in successes.items()}
    empty = SuccessHistory(())
    jobs = []
    for run in sorted(runs, key=_order):
        baseline = histories.get(run.pipeline, empty).baseline_s(run)
        jobs.append(JobOfDay(run, _verdict(run, baseline), run_duration_s(run, now), baseline))
    counts: dict[RunStatus, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    slow = tuple(j.run.run_id for j in jobs if j.verdict is Verdict.SLOW)
    return _day_numbers(window, counts, tuple(jobs), slow, upcoming)


def _day_numbers(
    window: DayWindow,
    counts: Mapping[RunStatus, int],
    jobs: tuple[JobOfDay, ...],
    slow_ids: tuple[str, ...],
    upcoming: int,
) -> DayOverview:
    done = sum(n for status, n in counts.items() if status.is_terminal())
    success = counts.get(RunStatus.SUCCESS, 0)
    return DayOverview(
        day=window.day,
        timezone=window.zone.key,
        jobs=jobs,
        upcoming=upcoming,
        done=done,
        scheduled=sum(counts.values()) + upcoming,
        success=success,
        failed=counts.get(RunStatus.FAILED, 0),
        running=counts.get(RunStatus.RUNNING, 0),
        queued=counts.get(RunStatus.QUEUED, 0),
        cancelled=counts.get(RunStatus.CANCELLED, 0),
        slow=len(slow_ids),
        success_rate=success / done if done else None,
        slow_ids=slow_ids,
    )


def stored_baseline_s(found: SuccessBaseline) -> float | None:
    """:func:`baseline_s` from the store's parts of it (see
    :meth:`~batchpilot.store.run_aggregates.RunAggregates.success_baselines`)."""
    if found.earlier_count < MIN_BASELINE_RUNS:
        return None
    return found.earlier_total_us / 1e6 / found.earlier_count


def is_stored_slow(found: SuccessBaseline) -> bool:
    """:func:`is_slow` from the store's numbers, compared in whole microseconds."""
    return (
        found.duration_us is not None
        and found.earlier_count >= MIN_BASELINE_RUNS
        and found.duration_us * found.earlier_count > SLOW_FACTOR * found.earlier_total_us
    )


def slots_still_due(
    specs: Sequence[PipelineSpec], window: DayWindow, now: datetime
) -> list[tuple[str, Slot]]:
    """The schedule slots of ``specs`` from ``now`` to the end of the day (paused pipelines
    included: pass only the ones to count), by time."""
    start = max(now, window.start)
    if start >= window.end:
        return []
    due = [
        (spec.name, slot)
        for spec in specs
        if spec.schedule is not None
        for slot in slots_between(spec.schedule, start, window.end, limit=1440)
    ]
    return sorted(due, key=lambda item: (item[1].at, item[0]))


def load_overview(
    store: RunStore,
    window: DayWindow,
    *,
    upcoming: int = 0,
    now: datetime | None = None,
    pipeline: str | None = None,
    shown: int = JOBS_SHOWN,
) -> DayOverview:
    """The numbers of :func:`summarize_day` for the store's runs of ``window`` (of one
    ``pipeline`` when given), with the newest ``shown`` runs as its ``jobs``.

    The counts and each success's baseline come from the store's aggregates (computed
    by the database); only the runs listed are read as records. Raises
    :class:`StoreError`."""
    counts = store.aggregates.status_counts(window.start, window.end, pipeline=pipeline)
    baselines = {
        found.run_id: found
        for found in store.aggregates.success_baselines(
            window.start, window.end, runs_before=BASELINE_RUNS, pipeline=pipeline
        )
    }
    slow = tuple(run_id for run_id, found in baselines.items() if is_stored_slow(found))
    slow_set = set(slow)
    where = RunFilter(pipeline=pipeline, created_from=window.start, created_until=window.end)
    jobs = []
    for run in reversed(store.queries.page(where, limit=shown).runs if shown else []):
        found = baselines.get(run.run_id)
        baseline = stored_baseline_s(found) if found is not None else None
        verdict = Verdict.SLOW if run.run_id in slow_set else _verdict(run, None)
        jobs.append(JobOfDay(run, verdict, run_duration_s(run, now), baseline))
    return _day_numbers(window, counts, tuple(jobs), slow, upcoming)


def unpaused(store: RunStore, specs: Sequence[PipelineSpec]) -> list[PipelineSpec]:
    """The pipelines among ``specs`` whose schedule is not paused."""
    paused = {state.pipeline for state in store.schedules.schedule_states() if state.paused}
    return [spec for spec in specs if spec.name not in paused]


def day_overview(
    store: RunStore,
    specs: Sequence[PipelineSpec],
    window: DayWindow,
    now: datetime,
    *,
    pipeline: str | None = None,
) -> DayOverview:
    """The overview of ``window`` for the pipelines ``specs`` (``serve``'s catalog): the
    day's runs, and the slots of unpaused schedules still due before its end. The
    dashboard's overview and the API's ``/stats`` both show this. Raises
    :class:`StoreError`."""
    due = slots_still_due(unpaused(store, specs), window, now)
    return load_overview(store, window, upcoming=len(due), now=now, pipeline=pipeline)


def _order(run: TimedRun) -> tuple[datetime, str]:
    return (run.created_at, run.run_id)


__all__ = [
    "BASELINE_RUNS",
    "JOBS_SHOWN",
    "MIN_BASELINE_RUNS",
    "SLOW_FACTOR",
    "DayOverview",
    "DayWindow",
    "JobOfDay",
    "SuccessHistory",
    "Verdict",
    "baseline_s",
    "day_overview",
    "day_window",
    "is_slow",
    "is_stored_slow",
    "load_overview",
    "run_duration_s",
    "slots_still_due",
    "stored_baseline_s",
    "summarize_day",
    "unpaused",
    "verdict",
]
