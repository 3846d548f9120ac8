"""The ``deadline`` rule: the slot's run must have succeeded by a time of day in the
schedule's time zone; it fires when nothing started, once, and a late success resolves it."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from batchpilot.clock import FakeClock
from batchpilot.monitor.deadlines import (
    DeadlineWatch,
    SlotOutcome,
    decide_deadline,
    latest_deadline,
)
from batchpilot.notify import Message
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.serialize import spec_to_document
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import RunStore
from batchpilot.store.run_rows import NewRun
from tests.alerts.history import set_run_state

PARIS = ZoneInfo("Europe/Paris")
# 2026-03-02: Paris is UTC+1; the 02:00 slot is 01:00 UTC, the 06:00 deadline 05:00 UTC
SLOT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DEADLINE = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def test_the_latest_deadline_is_today_once_passed_else_yesterday():
    at_7 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 07:00 in Paris
    assert latest_deadline(time(6, 0), PARIS, at_7) == DEADLINE
    at_5 = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 05:00 in Paris
    assert latest_deadline(time(6, 0), PARIS, at_5) == DEADLINE - timedelta(days=1)


OUTCOMES = [
    pytest.param(SlotOutcome(SLOT), True, "never started", id="no run at all"),
    pytest.param(
        SlotOutcome(SLOT, "r1", RunStatus.QUEUED), True, "queued, not started", id="queued"
    ),
    pytest.param(
        SlotOutcome(SLOT, "r1", RunStatus.RUNNING, started_at=SLOT),
        True,
        "still running (started at 02:00)",
        id="still running",
    ),
    pytest.param(
        SlotOutcome(SLOT, "r1", RunStatus.SUCCESS, SLOT, SLOT + timedelta(hours=1)),
        False,
        "succeeded at 03:00",
        id="succeeded in time",
    ),
    pytest.param(SlotOutcome(SLOT, "r1", RunStatus.FAILED), None, None, id="failed: one alert"),
]


@pytest.mark.parametrize(("outcome", "fired", "observed"), OUTCOMES)
def test_decide_deadline(outcome: SlotOutcome, fired: bool | None, observed: str | None):
    verdict = decide_deadline(outcome, deadline_at=DEADLINE, zone=PARIS, zone_name="Europe/Paris")
    assert (verdict.fired if verdict else None) == fired
    if verdict is not None:
        assert verdict.observed == observed
        assert verdict.threshold == "succeeded by 06:00 (Europe/Paris)"
        assert verdict.baseline == "the run of the 2026-03-02 02:00 slot"


def scheduled(name: str = "nightly"):  # type: ignore[no-untyped-def]
    return build_pipeline(
        {
            "name": name,
            "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Paris"},
            "monitoring": {"deadline": "06:00"},
            "notify": {"default": ["oncall"]},
            "nodes": [{"id": "a", "type": "empty"}],
        }
    )


def claim(  # type: ignore[no-untyped-def]
    store: RunStore,
    spec,
    run_id: str,
    status: RunStatus,
    ended: datetime | None = None,
    slot: datetime = SLOT,
):
    store.schedules.claim_slot(
        NewRun(
            run_id=run_id,
            pipeline=spec.name,
            spec=spec_to_document(spec),
            params={},
            ds="2026-03-02",
            source_path=None,
            task_ids=["a"],
            slot=slot,
            triggered_by=RunTrigger.SCHEDULE,
        ),
        advance_schedule=True,
    )
    set_run_state(store, run_id, status, started_at=SLOT, ended_at=ended)


def titles(store: RunStore) -> list[str]:
    return [Message.from_dict(r.message).title for r in store.list_notifications()]


def test_a_slot_that_never_started_alerts_once_at_the_deadline(store: RunStore):
    spec = scheduled()
    clock = FakeClock(DEADLINE - timedelta(hours=2))
    watch = DeadlineWatch(store, clock, lambda: {spec.name: spec}, {"oncall"})
    watch.check()  # 04:00 in Paris: yesterday's deadline, no slot before it -> nothing
    clock.advance(2 * 3600 + 30)  # 06:00:30 in Paris
    for _ in range(5):
        watch.check()
    assert titles(store) == ["nightly: not done by its deadline"]
    [alert] = store.alerts.list(open_only=True)
    assert (alert.rule, alert.observed) == ("deadline", "never started")
    assert alert.threshold == "succeeded by 06:00 (Europe/Paris)"
    # the run comes late, succeeds at 07:10: the episode resolves with one recovery notice
    claim(store, spec, "late", RunStatus.SUCCESS, DEADLINE + timedelta(minutes=70))
    clock.advance(3600)
    watch.check()
    watch.check()
    assert titles(store) == [
        "nightly: not done by its deadline",
        "Recovered: nightly: not done by its deadline",
    ]
    assert store.alerts.list(open_only=True) == []


def test_a_deadline_passed_while_serve_was_down_fires_on_the_first_check(store: RunStore):
    spec = scheduled()
    yesterday = SLOT - timedelta(days=1)
    claim(store, spec, "yesterday", RunStatus.SUCCESS, yesterday + timedelta(hours=1), yesterday)
    clock = FakeClock(DEADLINE + timedelta(hours=3))  # serve starts at 09:00 in Paris
    watch = DeadlineWatch(store, clock, lambda: {spec.name: spec}, {"oncall"})
    watch.check()
    [alert] = store.alerts.list(open_only=True)
    assert alert.observed == "never started (missed while serve was down)"


def test_a_pipeline_new_to_serve_is_not_blamed_for_a_deadline_before_it_came(store: RunStore):
    spec = scheduled()
    clock = FakeClock(DEADLINE + timedelta(hours=3))
    DeadlineWatch(store, clock, lambda: {spec.name: spec}, {"oncall"}).check()
    assert store.alerts.list() == []


def test_a_slot_that_succeeded_in_time_or_failed_gets_no_deadline_alert(store: RunStore):
    good, bad = scheduled("good"), scheduled("bad")
    claim(store, good, "ok", RunStatus.SUCCESS, SLOT + timedelta(hours=1))
    claim(store, bad, "ko", RunStatus.FAILED, SLOT + timedelta(minutes=5))
    clock = FakeClock(DEADLINE + timedelta(minutes=1))
    watch = DeadlineWatch(store, clock, lambda: {good.name: good, bad.name: bad}, {"oncall"})
    watch.check()
    assert store.alerts.list() == []
    assert titles(store) == []
