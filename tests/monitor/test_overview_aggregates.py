"""The overview read from the store's aggregates says what the overview's rules say over
the same runs, on SQLite and on PostgreSQL: counts by status, success rate and the slow
runs (each success against the mean of its pipeline's ten successes before it, the day
before included), to the microsecond."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from batchpilot.monitor.overview import (
    JOBS_SHOWN,
    DayWindow,
    Verdict,
    day_window,
    load_overview,
    summarize_day,
)
from batchpilot.states import RunStatus
from batchpilot.store import RunStore, RunSummaryRecord, run_aggregates
from batchpilot.store.tables import runs

END = datetime(2026, 11, 30, tzinfo=UTC)
DAY = day_window((END - timedelta(days=1)).date(), ZoneInfo("UTC"))


def row(
    run_id: str,
    pipeline: str,
    status: str,
    created: datetime,
    started: datetime | None,
    ended: datetime | None,
) -> dict[str, object]:
    return {
        "run_id": run_id,
        "pipeline": pipeline,
        "status": status,
        "params": {},
        "ds": created.date().isoformat(),
        "created_at": created,
        "started_at": started,
        "ended_at": ended,
        "needs_attention": False,
        "executor": "local",
        "cancel_requested": False,
        "triggered_by": "schedule",
    }


def three_days_of_runs(seed: int = 7) -> list[dict[str, object]]:
    """1,500 runs of 6 pipelines over three days: every status (and one this version does
    not know), durations to the microsecond, some never started, a few whose clock
    stepped back, and two runs created at the same instant; and a pipeline that ran
    twelve times in 22 weeks, slowly on the last day."""
    rnd = random.Random(seed)
    statuses = ["success"] * 6 + ["failed", "cancelled", "running", "queued", "paused?"]
    found = []
    for i in range(1500):
        created = END - timedelta(days=3, seconds=-rnd.randrange(3 * 86400))
        created += timedelta(microseconds=rnd.randrange(10**6))
        status = rnd.choice(statuses)
        started = None if rnd.random() < 0.03 else created + timedelta(milliseconds=5)
        took = timedelta(seconds=rnd.choice([10, 10, 10, 20, 21, 60, 5]))
        took += timedelta(microseconds=rnd.randrange(10**6))
        ended = started + took if started and status in ("success", "failed", "cancelled") else None
        if ended is not None and rnd.random() < 0.01:
            ended = started - timedelta(seconds=1)  # type: ignore[operator]
        found.append(row(f"r{i:05d}", f"p{rnd.randrange(6)}", status, created, started, ended))
    found.append({**found[0], "run_id": "r99999"})
    for i in range(12):  # a pipeline that runs every other week: its baseline lies far back
        created = END - timedelta(days=14 * i, hours=5 + i)
        took = timedelta(seconds=100 if i else 1000)
        found.append(row(f"rare{i:02d}", "rare", "success", created, created, created + took))
    return found


def by_the_rules(store: RunStore, window: DayWindow, pipeline: str | None) -> object:
    """The rules as pure functions over every run of the store, read as records."""
    everything = [
        r
        for r in store.queries.created_between(END - timedelta(days=200), END)
        if pipeline is None or r.pipeline == pipeline
    ]
    of_day = [r for r in everything if window.start <= r.created_at < window.end]
    successes: dict[str, list[RunSummaryRecord]] = {}
    for r in everything:
        if r.status is RunStatus.SUCCESS:
            successes.setdefault(r.pipeline, []).append(r)
    return summarize_day(window, of_day, successes)


@pytest.mark.parametrize("ranges", [run_aggregates.MAX_RANGES, 0], ids=["ranges", "one range"])
@pytest.mark.parametrize("pipeline", [None, "p2"], ids=["every pipeline", "one pipeline"])
def test_the_stored_overview_says_what_the_rules_say(
    state_store: RunStore, pipeline: str | None, ranges: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # past MAX_RANGES pipelines whose baseline lies far back, their earlier successes are
    # read as one range
    monkeypatch.setattr(run_aggregates, "MAX_RANGES", ranges)
    with state_store.engine.begin() as conn:
        conn.execute(insert(runs), three_days_of_runs())
    expected = by_the_rules(state_store, DAY, pipeline)
    found = load_overview(state_store, DAY, pipeline=pipeline)
    assert found.to_dict() == expected.to_dict()  # type: ignore[attr-defined]
    assert found.slow > 0 and found.done > found.slow
    assert found.slow_run_ids() == expected.slow_run_ids()  # type: ignore[attr-defined]
    # the newest runs of the day are listed, with the rules' verdicts and durations
    newest = expected.jobs[-JOBS_SHOWN:]  # type: ignore[attr-defined]
    assert [j.run.run_id for j in found.jobs] == [j.run.run_id for j in newest]
    assert [(j.verdict, j.duration_s) for j in found.jobs] == [
        (j.verdict, j.duration_s) for j in newest
    ]


def test_a_run_exactly_twice_its_baseline_is_not_slow_and_a_microsecond_more_is(
    state_store: RunStore,
) -> None:
    before = DAY.start - timedelta(hours=3)
    history = []
    for pipeline in ("exactly", "more"):
        for i, seconds in enumerate((9, 10, 11)):  # a baseline of 10.333333 s
            start = before + timedelta(minutes=i)
            took = timedelta(seconds=seconds, microseconds=333_333)
            history.append(row(f"{pipeline}-{i}", pipeline, "success", start, start, start + took))
    at = DAY.start + timedelta(hours=1)
    twice = timedelta(seconds=20, microseconds=666_666)
    today = [
        row("exactly", "exactly", "success", at, at, at + twice),
        row("more", "more", "success", at, at, at + twice + timedelta(microseconds=1)),
    ]
    with state_store.engine.begin() as conn:
        conn.execute(insert(runs), [*history, *today])
    found = load_overview(state_store, DAY)
    assert found.slow_run_ids() == ["more"]
    assert {j.run.run_id: j.verdict for j in found.jobs} == {
        "exactly": Verdict.OK,
        "more": Verdict.SLOW,
    }
