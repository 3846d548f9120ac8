"""The schedule's decisions as pure functions: due slots, catchup, overlap, jitter, room."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from batchpilot.scheduler.jitter import jitter_delay
from batchpilot.scheduler.policies import (
    ActiveRuns,
    consecutive_failures,
    due_slots,
    may_start,
    plan_slots,
)
from batchpilot.spec.schedule import parse_schedule

NOON = datetime(2024, 3, 10, 12, 0, 30, tzinfo=UTC)


def hourly(**fields):
    return parse_schedule({"cron": "0 * * * *", **fields})


def instants(slots):
    return [s.at for s in slots]


def test_a_new_schedule_runs_only_its_latest_due_slot():
    plan = plan_slots("p", hourly(catchup="all"), last=None, now=NOON, active=ActiveRuns())
    assert instants(plan.claim) == [datetime(2024, 3, 10, 12, tzinfo=UTC)]
    assert plan.missed == () and plan.skip_to is None


def test_a_new_schedule_with_a_start_date_and_catchup_all_runs_every_slot_since():
    schedule = hourly(catchup="all", start_date="2024-03-10T09:00")
    plan = plan_slots("p", schedule, last=None, now=NOON, active=ActiveRuns())
    assert [s.at.hour for s in plan.claim] == [9, 10, 11, 12]


def test_nothing_is_due_before_the_next_slot():
    last = datetime(2024, 3, 10, 12, tzinfo=UTC)
    now = NOON + timedelta(minutes=30)
    plan = plan_slots("p", hourly(), last=last, now=now, active=ActiveRuns())
    assert plan.claim == () and plan.skip_to is None and plan.missed == ()


def test_an_on_time_slot_is_claimed_and_nothing_is_missed():
    last = datetime(2024, 3, 10, 11, tzinfo=UTC)
    for catchup in ("none", "last", "all"):
        plan = plan_slots("p", hourly(catchup=catchup), last=last, now=NOON, active=ActiveRuns())
        assert [s.at.hour for s in plan.claim] == [12]
        assert plan.missed == ()


def test_catchup_after_being_down_three_hours():
    last = datetime(2024, 3, 10, 8, tzinfo=UTC)
    now = datetime(2024, 3, 10, 11, 30, tzinfo=UTC)  # slots 09, 10, 11 were missed

    def plan(catchup):
        return plan_slots("p", hourly(catchup=catchup), last=last, now=now, active=ActiveRuns())

    every = plan("all")
    assert [s.at.hour for s in every.claim] == [9, 10, 11]
    assert [s.at.hour for s in every.missed] == [9, 10, 11]
    latest = plan("last")
    assert [s.at.hour for s in latest.claim] == [11] and latest.skip_to is None
    assert [s.at.hour for s in latest.missed] == [9, 10, 11]
    none = plan("none")
    assert none.claim == () and none.skip_to.at.hour == 11
    assert [s.at.hour for s in none.missed] == [9, 10, 11]


def test_catchup_none_still_runs_the_newest_slot_when_it_is_on_time():
    last = datetime(2024, 3, 10, 9, tzinfo=UTC)
    plan = plan_slots("p", hourly(catchup="none"), last=last, now=NOON, active=ActiveRuns())
    assert [s.at.hour for s in plan.claim] == [12]
    assert [s.at.hour for s in plan.missed] == [10, 11]


def test_overlap_when_the_schedule_is_full():
    last = datetime(2024, 3, 10, 11, tzinfo=UTC)
    busy = ActiveRuns(running=1)

    def plan(overlap, active=busy):
        return plan_slots("p", hourly(overlap=overlap), last=last, now=NOON, active=active)

    assert plan("skip").claim == () and plan("skip").skip_to.at.hour == 12
    assert [s.at.hour for s in plan("buffer_one").claim] == [12]
    assert plan("buffer_one", ActiveRuns(running=1, waiting=1)).claim == ()
    assert [s.at.hour for s in plan("buffer_all", ActiveRuns(running=1, waiting=3)).claim] == [12]
    assert [s.at.hour for s in plan("allow").claim] == [12]
    cancel = plan("cancel_running")
    assert [s.at.hour for s in cancel.claim] == [12] and cancel.cancel_active == 1


def test_max_active_runs_leaves_room_before_overlap_applies():
    last = datetime(2024, 3, 10, 11, tzinfo=UTC)
    schedule = hourly(max_active_runs=2)
    plan = plan_slots("p", schedule, last=last, now=NOON, active=ActiveRuns(running=1))
    assert [s.at.hour for s in plan.claim] == [12]


def test_a_slot_with_jitter_is_due_only_after_its_delay():
    schedule = hourly(jitter="30m")
    slot_at = datetime(2024, 3, 10, 12, tzinfo=UTC)
    delay = jitter_delay("p", slot_at, schedule.jitter_s)
    assert 0 < delay < 1800
    before = slot_at + timedelta(seconds=delay - 1)
    after = slot_at + timedelta(seconds=delay)
    last = datetime(2024, 3, 10, 11, tzinfo=UTC)
    assert 12 not in [s.at.hour for s in due_slots("p", schedule, last, before)]
    assert [s.at.hour for s in due_slots("p", schedule, last, after)][-1] == 12


def test_start_and_end_dates_bound_the_slots():
    schedule = hourly(start_date="2024-03-10T13:00", end_date="2024-03-10T15:00")
    assert due_slots("p", schedule, None, NOON) == []
    late = datetime(2024, 3, 11, tzinfo=UTC)
    assert [s.at.hour for s in due_slots("p", schedule, None, late)] == [15]


def test_a_daily_slot_s_ds_is_its_local_date():
    schedule = parse_schedule({"cron": "0 1 * * *", "timezone": "Europe/Paris"})
    (slot,) = due_slots("p", schedule, None, datetime(2024, 3, 10, 0, 30, tzinfo=UTC))
    assert slot.at == datetime(2024, 3, 10, 0, 0, tzinfo=UTC) and slot.ds == "2024-03-10"


def test_runs_wait_for_room_unless_overlap_allows():
    assert may_start(hourly(), 0) and not may_start(hourly(), 1)
    assert may_start(hourly(max_active_runs=3), 2)
    assert may_start(hourly(overlap="allow"), 50)
    assert may_start(None, 99)


def test_consecutive_failures_count_back_from_the_newest():
    assert consecutive_failures(["failed", "failed", "success", "failed"]) == 2
    assert consecutive_failures(["success", "failed"]) == 0
    assert consecutive_failures([]) == 0
