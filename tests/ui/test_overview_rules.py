"""The overview's rules as pure functions over run records: the day's window, the slow
rule and its baseline, the counts and the success rate."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from batchpilot.monitor.overview import (
    Verdict,
    baseline_s,
    day_window,
    is_slow,
    slots_still_due,
    summarize_day,
)
from batchpilot.spec.loader import build_pipeline
from batchpilot.states import RunStatus
from batchpilot.store import RunRecord

T0 = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)


def run(
    run_id: str,
    minutes: float,
    status: RunStatus = RunStatus.SUCCESS,
    *,
    at: datetime,
    pipeline: str = "etl",
) -> RunRecord:
    ended = at + timedelta(minutes=minutes) if status.is_terminal() else None
    return RunRecord(
        run_id=run_id,
        pipeline=pipeline,
        status=status,
        source_path=None,
        spec={},
        params={},
        ds=at.date().isoformat(),
        created_at=at,
        started_at=at,
        ended_at=ended,
        owner=None,
        heartbeat_at=None,
        error=None,
        needs_attention=False,
    )


def history(count: int, minutes: float = 10) -> list[RunRecord]:
    return [run(f"h{i}", minutes, at=T0 - timedelta(days=i + 1)) for i in range(count)]


def test_a_day_runs_from_local_midnight_to_the_next_even_across_a_clock_change() -> None:
    paris = ZoneInfo("Europe/Paris")
    window = day_window(date(2026, 3, 29), paris)  # clocks go forward: a 23-hour day
    assert window.start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert window.end - window.start == timedelta(hours=23)


def test_slow_means_more_than_twice_the_mean_of_the_last_ten_successes_before_it() -> None:
    successes = history(12, minutes=10)
    assert baseline_s(run("today", 21, at=T0), successes) == 600.0
    assert is_slow(run("today", 21, at=T0), successes)
    assert not is_slow(run("today", 20, at=T0), successes)  # exactly twice is not slow


def test_only_the_ten_newest_successes_make_the_baseline() -> None:
    successes = [*history(10, minutes=10), run("old", 1000, at=T0 - timedelta(days=30))]
    assert baseline_s(run("today", 25, at=T0), successes) == 600.0


def test_fewer_than_three_earlier_successes_make_no_baseline() -> None:
    assert baseline_s(run("today", 99, at=T0), history(2)) is None
    assert not is_slow(run("today", 99, at=T0), history(2))
    later = [run("later", 1, at=T0 + timedelta(hours=1))] * 5
    assert baseline_s(run("today", 99, at=T0), later) is None  # runs after it do not count


def test_a_failed_run_is_failed_however_long_it_took() -> None:
    day = day_window(T0.date(), ZoneInfo("UTC"))
    runs = [run("f", 500, RunStatus.FAILED, at=T0)]
    overview = summarize_day(day, runs, {"etl": history(5)})
    assert [j.verdict for j in overview.jobs] == [Verdict.FAILED]
    assert overview.slow == 0


def test_the_days_counts_and_success_rate() -> None:
    day = day_window(T0.date(), ZoneInfo("UTC"))
    at = [T0 + timedelta(minutes=i) for i in range(6)]
    runs = [
        run("ok1", 10, at=at[0]),
        run("slow", 30, at=at[1]),
        run("bad", 3, RunStatus.FAILED, at=at[2]),
        run("stop", 3, RunStatus.CANCELLED, at=at[3]),
        run("busy", 0, RunStatus.RUNNING, at=at[4]),
        run("wait", 0, RunStatus.QUEUED, at=at[5]),
    ]
    overview = summarize_day(day, runs, {"etl": history(10)}, upcoming=3, now=at[5])
    assert overview.to_dict() == {
        "day": "2026-03-10",
        "timezone": "UTC",
        "done": 4,
        "scheduled": 9,
        "upcoming": 3,
        "success": 2,
        "failed": 1,
        "running": 1,
        "queued": 1,
        "cancelled": 1,
        "slow": 1,
        "success_rate": 0.5,
    }
    assert overview.slow_run_ids() == ["slow"]
    assert [j.verdict.value for j in overview.jobs] == [
        "ok",
        "slow",
        "failed",
        "cancelled",
        "running",
        "queued",
    ]
    assert overview.jobs[4].duration_s == 60.0  # running: up to now


def test_no_run_ended_means_no_success_rate() -> None:
    overview = summarize_day(day_window(T0.date(), ZoneInfo("UTC")), [], {})
    assert overview.success_rate is None and overview.done == 0 and overview.scheduled == 0


def test_slots_still_due_are_those_from_now_to_midnight() -> None:
    spec = build_pipeline(
        {"name": "hourly", "schedule": "0 */6 * * *", "nodes": [{"id": "a", "type": "empty"}]}
    )
    day = day_window(T0.date(), ZoneInfo("UTC"))
    due = slots_still_due([spec], day, T0 + timedelta(minutes=1))  # 06:01
    assert [slot.at.hour for _, slot in due] == [12, 18]
    assert slots_still_due([spec], day, day.end + timedelta(hours=1)) == []
