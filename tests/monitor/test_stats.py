"""``batchpilot stats`` numbers: pure functions over hand-made run histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from batchpilot.monitor.history import RunSample, load_task_ids, rows_written, sample_of
from batchpilot.monitor.stats import Trend, percentile, pipeline_stats, trend
from batchpilot.states import RunStatus, RunTrigger, TaskState
from batchpilot.store import RunRecord, TaskRecord

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def sample(
    i: int,
    status: RunStatus = RunStatus.SUCCESS,
    *,
    seconds: float = 10.0,
    rows: int | None = 100,
    delay: float | None = None,
) -> RunSample:
    start = T0 + timedelta(days=i)
    return RunSample(
        run_id=f"r{i}",
        status=status,
        created_at=start,
        started_at=start,
        ended_at=start + timedelta(seconds=seconds),
        rows_written=rows,
        slot_delay_s=delay,
    )


def test_the_success_rate_counts_failures_but_not_cancelled_runs():
    history = [
        sample(0),
        sample(1, RunStatus.FAILED),
        sample(2),
        sample(3, RunStatus.CANCELLED),
        sample(4),
    ]
    stats = pipeline_stats("daily", history)
    assert stats.runs == 5
    assert stats.by_status == {"success": 3, "failed": 1, "cancelled": 1}
    assert stats.success_rate == pytest.approx(0.75)
    assert stats.to_dict()["success_rate"] == 0.75


def test_durations_and_rows_are_those_of_successful_runs_oldest_first():
    history = [
        sample(0, seconds=10, rows=100),
        sample(1, RunStatus.FAILED, seconds=1, rows=0),  # failed early: left out
        sample(2, seconds=20, rows=120),
        sample(3, seconds=30, rows=None),  # no load recorded rows: no row value
        sample(4, seconds=40, rows=140),
    ]
    stats = pipeline_stats("daily", history)
    assert stats.durations == [10, 20, 30, 40]
    assert stats.rows == [100, 120, 140]
    numbers = stats.to_dict()
    assert numbers["duration_s"]["p50"] == 25.0
    assert numbers["duration_s"]["p95"] == pytest.approx(38.5)
    assert numbers["rows_written"]["last"] == 140
    assert numbers["rows_written"]["mean"] == 120.0


def test_the_trend_compares_the_newer_half_with_the_older_half():
    assert trend([10, 10, 99, 20, 20]) == Trend(10.0, 20.0)  # the middle value is left out
    assert trend([10, 10, 20, 20]).change == 1.0
    assert trend([10, 10, 20, 20]).direction == "up"
    assert trend([100, 80]).direction == "down"
    assert trend([100, 104]).direction == "flat"  # within 5 %
    assert trend([5]) is None and trend([]) is None
    assert Trend(0.0, 3.0).change is None and Trend(0.0, 3.0).direction == "up"


def test_a_slowdown_shows_as_a_duration_trend_up():
    history = [sample(i, seconds=60) for i in range(5)] + [
        sample(i, seconds=150) for i in range(5, 10)
    ]
    trend_json = pipeline_stats("daily", history).to_dict()["duration_s"]["trend"]
    assert trend_json == {
        "older_mean": 60.0,
        "newer_mean": 150.0,
        "change": 1.5,
        "direction": "up",
    }


def test_percentiles_interpolate_and_need_values():
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2.5
    with pytest.raises(ValueError, match="1 to 99"):
        percentile([1, 2], 100)


def test_no_history_gives_empty_numbers():
    numbers = pipeline_stats("daily", []).to_dict()
    assert numbers["runs"] == 0 and numbers["success_rate"] is None
    assert numbers["duration_s"] == {"p50": None, "p95": None, "trend": None, "values": []}
    assert numbers["rows_written"]["trend"] is None


def test_slot_delays_come_from_scheduled_runs_only():
    history = [sample(0, delay=2.0), sample(1), sample(2, delay=4.0)]
    assert pipeline_stats("daily", history).to_dict()["slot_delay_s"] == {
        "p50": 3.0,
        "p95": pytest.approx(3.9),
        "max": 4.0,
    }


def _run(**values: object) -> RunRecord:
    base: dict[str, object] = {
        "run_id": "r1",
        "pipeline": "daily",
        "status": RunStatus.SUCCESS,
        "source_path": None,
        "spec": {},
        "params": {},
        "ds": "2026-03-01",
        "created_at": T0,
        "started_at": T0 + timedelta(seconds=7),
        "ended_at": T0 + timedelta(seconds=60),
        "owner": None,
        "heartbeat_at": None,
        "error": None,
        "needs_attention": False,
    }
    base.update(values)
    return RunRecord(**base)  # type: ignore[arg-type]


def test_the_slot_delay_is_start_minus_slot_for_scheduled_runs_only():
    scheduled = _run(slot=T0 - timedelta(seconds=3), triggered_by=RunTrigger.SCHEDULE.value)
    assert scheduled.slot_delay_s == 10.0
    backfilled = _run(slot=T0 - timedelta(days=30), triggered_by=RunTrigger.BACKFILL.value)
    assert backfilled.slot_delay_s is None  # a backfill's slot is in the past on purpose
    assert _run(slot=T0, triggered_by="schedule", started_at=None).slot_delay_s is None
    assert _run().slot_delay_s is None


def _task(task_id: str, rows_out: int | None, rejected: int | None = None) -> TaskRecord:
    return TaskRecord(
        run_id="r1",
        task_id=task_id,
        position=0,
        state=TaskState.SUCCESS,
        attempts=1,
        rows_in=None,
        rows_out=rows_out,
        rows_rejected=rejected,
        started_at=None,
        ended_at=None,
        duration_s=None,
        error=None,
        output=None,
    )


SPEC = {
    "nodes": [
        {"id": "extract", "type": "extract.csv", "depends_on": []},
        {"id": "to_dwh", "type": "load.postgres", "depends_on": ["extract"]},
        {"id": "to_file", "type": "load.file", "depends_on": ["extract"]},
        {"id": "report", "type": "python", "depends_on": ["to_dwh"]},
    ]
}


def test_rows_written_are_the_rows_out_of_the_load_tasks():
    tasks = [_task("extract", 500, rejected=2), _task("to_dwh", 498), _task("to_file", 498)]
    assert load_task_ids(SPEC) == {"to_dwh", "to_file"}
    assert rows_written(SPEC, tasks) == 996
    assert rows_written(SPEC, [_task("extract", 500)]) is None  # no load recorded rows
    run_sample = sample_of(_run(spec=SPEC), tasks)
    assert (run_sample.rows_written, run_sample.rows_rejected) == (996, 2)
    assert run_sample.duration_s == 53.0


def test_a_pipeline_without_loads_counts_the_rows_of_its_final_tasks():
    spec = {
        "nodes": [
            {"id": "a", "type": "sql", "depends_on": []},
            {"id": "b", "type": "sql", "depends_on": ["a"]},
            {"id": "c", "type": "python", "depends_on": ["a"]},
        ]
    }
    assert load_task_ids(spec) == {"b", "c"}
    assert rows_written(spec, [_task("a", 7), _task("b", 5), _task("c", 1)]) == 6
