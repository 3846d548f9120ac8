"""One scheduling pass against a real state store (SQLite and PostgreSQL), with a fake clock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from batchpilot.clock import FakeClock
from batchpilot.engine import RunService
from batchpilot.engine.queued import queued_run
from batchpilot.scheduler.jitter import jitter_delay
from batchpilot.scheduler.tick import (
    CLAIMS_PER_TRANSACTION,
    NextSlots,
    cancel_by_request,
    pause_after_failures,
    run_tick,
)
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import RunStore

START = datetime(2024, 3, 10, 12, 0, 5, tzinfo=UTC)


def schedule_runs(store: RunStore, pipeline: str = "nightly"):
    return sorted(store.list_runs(limit=1000, pipeline=pipeline), key=lambda r: r.slot)


def test_a_due_slot_becomes_one_queued_run_recording_its_slot_and_trigger(
    state_store, scheduled_pipeline
):
    spec = scheduled_pipeline({"cron": "0 1 * * *", "timezone": "Europe/Paris"})
    clock = FakeClock(datetime(2024, 3, 10, 0, 0, 10, tzinfo=UTC))  # 01:00:10 in Paris
    report = run_tick([spec], state_store, clock)
    (run,) = schedule_runs(state_store)
    assert report.created == [run.run_id]
    assert run.status is RunStatus.QUEUED and run.owner is None
    assert run.slot == datetime(2024, 3, 10, 0, 0, tzinfo=UTC)
    assert run.ds == "2024-03-10"
    assert run.triggered_by == RunTrigger.SCHEDULE.value
    assert state_store.schedules.schedule_state("nightly").last_slot == run.slot


def test_a_pass_repeated_or_run_by_a_second_scheduler_claims_nothing_twice(
    state_store, scheduled_pipeline
):
    spec = scheduled_pipeline({"cron": "0 * * * *", "overlap": "allow"})
    clock = FakeClock(START)
    run_tick([spec], state_store, clock)
    second = RunStore(state_store.url)
    try:
        assert run_tick([spec], second, clock).created == []
        assert run_tick([spec], state_store, clock).created == []
    finally:
        second.dispose()
    assert len(schedule_runs(state_store)) == 1


def test_an_edited_schedule_never_runs_a_claimed_slot_again(sqlite_store, scheduled_pipeline):
    clock = FakeClock(START)
    run_tick([scheduled_pipeline({"cron": "0 * * * *"})], sqlite_store, clock)
    edited = scheduled_pipeline({"cron": "0 12 * * *", "catchup": "all"})
    assert run_tick([edited], sqlite_store, clock).created == []
    # claimed directly again (a scheduler that lost its last slot), the claim stands
    run = schedule_runs(sqlite_store)[0]
    again = sqlite_store.schedules.claim_slot(
        queued_run(edited, run_id="other", ds="2024-03-10", slot=run.slot), advance_schedule=True
    )
    assert again.created is False and again.run_id == run.run_id


def test_slots_missed_while_down_follow_catchup_all_and_leave_one_record(
    state_store, scheduled_pipeline
):
    spec = scheduled_pipeline({"cron": "0 * * * *", "catchup": "all", "max_active_runs": 2})
    clock = FakeClock(START)
    run_tick([spec], state_store, clock)
    clock.set(START + timedelta(hours=3, minutes=20))  # down: 13:00, 14:00, 15:00 missed
    report = run_tick([spec], state_store, clock)
    assert len(report.created) == 3
    slots = [r.slot.hour for r in schedule_runs(state_store)]
    assert slots == [12, 13, 14, 15]
    (record,) = state_store.schedules.missed_slots("nightly")
    assert record.catchup == "all" and record.slot_count == 3
    assert [s.hour for s in record.slots] == [13, 14, 15]


def test_catchup_last_runs_only_the_newest_missed_slot(sqlite_store, scheduled_pipeline):
    spec = scheduled_pipeline({"cron": "0 * * * *", "overlap": "allow"})
    clock = FakeClock(START)
    run_tick([spec], sqlite_store, clock)
    clock.set(START + timedelta(hours=5, minutes=1))
    run_tick([spec], sqlite_store, clock)
    assert [r.slot.hour for r in schedule_runs(sqlite_store)] == [12, 17]
    (record,) = sqlite_store.schedules.missed_slots("nightly")
    assert [s.hour for s in record.slots] == [13, 14, 15, 16, 17]


def test_catchup_none_skips_what_was_missed(sqlite_store, scheduled_pipeline):
    spec = scheduled_pipeline({"cron": "0 * * * *", "catchup": "none", "overlap": "allow"})
    clock = FakeClock(START)
    run_tick([spec], sqlite_store, clock)
    clock.set(START + timedelta(hours=2, minutes=30))
    run_tick([spec], sqlite_store, clock)
    assert [r.slot.hour for r in schedule_runs(sqlite_store)] == [12]
    assert sqlite_store.schedules.schedule_state("nightly").last_slot.hour == 14
    clock.set(START + timedelta(hours=3))  # 15:00:05: on time again
    run_tick([spec], sqlite_store, clock)
    assert [r.slot.hour for r in schedule_runs(sqlite_store)] == [12, 15]


def test_a_paused_schedule_claims_nothing_and_unpause_follows_catchup(
    sqlite_store, scheduled_pipeline
):
    spec = scheduled_pipeline({"cron": "0 * * * *", "overlap": "allow"})
    clock = FakeClock(START)
    run_tick([spec], sqlite_store, clock)
    sqlite_store.schedules.set_paused("nightly", True)
    clock.set(START + timedelta(hours=3, minutes=10))
    assert run_tick([spec], sqlite_store, clock).created == []
    sqlite_store.schedules.set_paused("nightly", False)
    run_tick([spec], sqlite_store, clock)
    assert [r.slot.hour for r in schedule_runs(sqlite_store)] == [12, 15]
    (record,) = sqlite_store.schedules.missed_slots("nightly")
    assert record.slot_count == 3


def test_overlap_skip_passes_over_a_slot_while_a_run_is_active(sqlite_store, scheduled_pipeline):
    spec = scheduled_pipeline({"cron": "0 * * * *"})  # overlap skip, max_active_runs 1
    clock = FakeClock(START)
    run_tick([spec], sqlite_store, clock)
    clock.advance(timedelta(hours=1))
    report = run_tick([spec], sqlite_store, clock)
    assert report.created == [] and report.passed_over["nightly"].at.hour == 13
    (first,) = schedule_runs(sqlite_store)
    sqlite_store.set_run_status(first.run_id, RunStatus.SUCCESS)
    clock.advance(timedelta(hours=1))
    assert len(run_tick([spec], sqlite_store, clock).created) == 1


def test_overlap_buffer_all_queues_every_slot(sqlite_store, scheduled_pipeline):
    spec = scheduled_pipeline({"cron": "0 * * * *", "overlap": "buffer_all"})
    clock = FakeClock(START)
    for _ in range(3):
        run_tick([spec], sqlite_store, clock)
        clock.advance(timedelta(hours=1))
    assert [r.status for r in schedule_runs(sqlite_store)] == [RunStatus.QUEUED] * 3


def test_overlap_cancel_running_cancels_the_active_run(
    state_store, scheduled_pipeline, tmp_path: Path
):
    spec = scheduled_pipeline({"cron": "0 * * * *", "overlap": "cancel_running"})
    service = RunService(settings=Settings(home=tmp_path / "home"), store=state_store)
    cancel = cancel_by_request(state_store, service.cancel)
    clock = FakeClock(START)
    run_tick([spec], state_store, clock, cancel=cancel)
    clock.advance(timedelta(hours=1))
    report = run_tick([spec], state_store, clock, cancel=cancel)
    first, second = schedule_runs(state_store)
    assert report.cancelled == [first.run_id]
    assert first.status is RunStatus.CANCELLED and second.status is RunStatus.QUEUED


def test_k_failed_runs_in_a_row_pause_the_schedule(sqlite_store, scheduled_pipeline):
    spec = scheduled_pipeline({"cron": "0 * * * *", "max_consecutive_failures": 2})
    clock = FakeClock(START)
    for status in (RunStatus.FAILED, RunStatus.SUCCESS, RunStatus.FAILED):
        run_tick([spec], sqlite_store, clock)
        run = schedule_runs(sqlite_store)[-1]
        sqlite_store.set_run_status(run.run_id, status)
        assert pause_after_failures(sqlite_store, spec) is False
        clock.advance(timedelta(hours=1))
    run_tick([spec], sqlite_store, clock)
    sqlite_store.set_run_status(schedule_runs(sqlite_store)[-1].run_id, RunStatus.FAILED)
    assert pause_after_failures(sqlite_store, spec) is True
    state = sqlite_store.schedules.schedule_state("nightly")
    assert state.paused and "2 failed runs in a row" in state.paused_reason
    clock.advance(timedelta(hours=1))
    assert run_tick([spec], sqlite_store, clock).created == []


def test_manual_and_backfill_runs_never_count_against_max_active_runs(
    sqlite_store, scheduled_pipeline
):
    spec = scheduled_pipeline({"cron": "0 * * * *"})
    sqlite_store.create_run(
        run_id="manual-1",
        pipeline="nightly",
        spec={},
        params={},
        ds="2024-03-10",
        source_path=None,
        task_ids=["noop"],
        triggered_by=RunTrigger.MANUAL,
    )
    assert len(run_tick([spec], sqlite_store, FakeClock(START)).created) == 1


def test_two_schedulers_on_one_postgresql_store_claim_each_of_50_slots_once(
    pg_url: str, tmp_path: Path
):
    script = textwrap.dedent(
        """
        import sys, time
        from datetime import UTC, datetime, timedelta
        from pathlib import Path
        from batchpilot.clock import FakeClock
        from batchpilot.scheduler.tick import run_tick
        from batchpilot.spec.loader import build_pipeline
        from batchpilot.store import RunStore

        url, go = sys.argv[1], Path(sys.argv[2])
        spec = build_pipeline({"name": "minutely", "nodes": [{"id": "noop", "type": "empty"}],
                               "schedule": {"cron": "* * * * *", "overlap": "allow"}})
        store = RunStore(url, migrate=False)
        start = datetime(2024, 3, 10, 12, 0, 1, tzinfo=UTC)
        while not go.exists():
            time.sleep(0.01)
        created = 0
        for minute in range(50):
            clock = FakeClock(start + timedelta(minutes=minute))
            created += len(run_tick([spec], store, clock).created)
        print(created)
        """
    )
    RunStore(pg_url).dispose()  # migrated once, before the race
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, pg_url, str(go)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    go.touch()
    counts = [int(p.communicate(timeout=120)[0]) for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    store = RunStore(pg_url)
    try:
        claims = store.schedules.slot_claims("minutely")
        runs = store.list_runs(limit=1000, pipeline="minutely")
    finally:
        store.dispose()
    assert sum(counts) == 50
    assert len(claims) == 50 and len({c.slot for c in claims}) == 50
    assert len(runs) == 50 and {r.run_id for r in runs} == {c.run_id for c in claims}


def test_a_scheduler_killed_mid_pass_leaves_each_slot_claimed_with_its_run_or_not_at_all(
    tmp_path: Path,
):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    spec_document = {
        "name": "minutely",
        "nodes": [{"id": "noop", "type": "empty"}],
        "schedule": {"cron": "* * * * *", "catchup": "all", "overlap": "allow"},
    }
    spec = build_pipeline(spec_document)
    store = RunStore(url)
    run_tick([spec], store, FakeClock(START))
    later = START + timedelta(minutes=600)  # 600 missed slots, claimed one transaction each
    script = textwrap.dedent(
        f"""
        from datetime import datetime
        from batchpilot.clock import FakeClock
        from batchpilot.scheduler.tick import run_tick
        from batchpilot.spec.loader import build_pipeline
        from batchpilot.store import RunStore

        spec = build_pipeline({spec_document!r})
        clock = FakeClock(datetime.fromisoformat({later.isoformat()!r}))
        run_tick([spec], RunStore({url!r}), clock)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while len(store.list_runs(limit=100, pipeline="minutely")) < 30:
            assert process.poll() is None, "the pass ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    partial = len(store.schedules.slot_claims("minutely"))
    run_tick([spec], store, FakeClock(later))  # the restarted scheduler finishes the pass
    claims = store.schedules.slot_claims("minutely")
    runs = store.list_runs(limit=1000, pipeline="minutely")
    store.dispose()
    assert 30 <= partial < 601
    assert len(claims) == 601 and len({c.slot for c in claims}) == 601
    assert sorted(r.run_id for r in runs) == sorted(c.run_id for c in claims)


def test_remembered_next_slots_skip_schedules_until_their_slot_and_claim_on_the_instant(
    state_store, scheduled_pipeline
):
    spec = scheduled_pipeline({"cron": "0 * * * *", "overlap": "allow"})
    later = scheduled_pipeline({"cron": "30 * * * *", "overlap": "allow"}, name="half_past")
    next_slots = NextSlots()
    clock = FakeClock(START)  # 12:00:05: a new schedule runs its newest slot (12:00, 11:30)
    assert len(run_tick([spec, later], state_store, clock, next_slots=next_slots).created) == 2
    assert next_slots.earliest_due() == datetime(2024, 3, 10, 12, 30, tzinfo=UTC)
    clock.set(datetime(2024, 3, 10, 12, 29, 59, 999999, tzinfo=UTC))
    assert run_tick([spec, later], state_store, clock, next_slots=next_slots).created == []
    clock.set(datetime(2024, 3, 10, 12, 30, tzinfo=UTC))
    (run_id,) = run_tick([spec, later], state_store, clock, next_slots=next_slots).created
    assert state_store.get_run(run_id).slot == datetime(2024, 3, 10, 12, 30, tzinfo=UTC)
    assert next_slots.earliest_due() == datetime(2024, 3, 10, 13, 0, tzinfo=UTC)


def test_remembered_next_slots_never_hide_an_edited_schedule_or_a_slot_moved_by_another_scheduler(
    sqlite_store, scheduled_pipeline
):
    hourly = scheduled_pipeline({"cron": "0 * * * *", "overlap": "allow"})
    next_slots = NextSlots()
    clock = FakeClock(START)
    run_tick([hourly], sqlite_store, clock, next_slots=next_slots)
    edited = scheduled_pipeline({"cron": "*/5 * * * *", "overlap": "allow"})
    clock.set(START + timedelta(minutes=5))  # 12:05:05: due for the edit, not for hourly
    assert len(run_tick([edited], sqlite_store, clock, next_slots=next_slots).created) == 1
    # a second scheduler claims 12:10 first; this one then sees the moved last slot
    clock.set(START + timedelta(minutes=10))
    assert len(run_tick([edited], sqlite_store, clock).created) == 1
    assert run_tick([edited], sqlite_store, clock, next_slots=next_slots).created == []
    assert next_slots.earliest_due() == datetime(2024, 3, 10, 12, 15, tzinfo=UTC)
    assert [r.slot.minute for r in schedule_runs(sqlite_store)] == [0, 5, 10]


def test_a_schedule_not_started_yet_is_remembered_until_its_start_date_and_jitter(
    sqlite_store, scheduled_pipeline
):
    start = datetime(2024, 3, 10, 12, 3, tzinfo=UTC)
    spec = scheduled_pipeline({"cron": "* * * * *", "start_date": start.isoformat()})
    first_jittered = datetime(2024, 3, 10, 13, 0, tzinfo=UTC)
    jittered = scheduled_pipeline(
        {"cron": "0 13 * * *", "jitter": "30s", "start_date": first_jittered.isoformat()},
        name="jittered",
    )
    next_slots = NextSlots()
    clock = FakeClock(START)
    assert run_tick([spec, jittered], sqlite_store, clock, next_slots=next_slots).created == []
    assert next_slots.earliest_due() == start
    clock.set(start)
    (run_id,) = run_tick([spec, jittered], sqlite_store, clock, next_slots=next_slots).created
    assert sqlite_store.get_run(run_id).slot == start
    clock.set(datetime(2024, 3, 10, 12, 59, 59, tzinfo=UTC))
    run_tick([jittered], sqlite_store, clock, next_slots=next_slots)
    due = next_slots.earliest_due()  # its first slot plus its jitter, the same every time
    assert first_jittered <= due < first_jittered + timedelta(seconds=30)
    assert due == first_jittered + timedelta(seconds=jitter_delay("jittered", first_jittered, 30))
    clock.set(first_jittered)  # the slot's instant, before its jitter: not due yet
    assert run_tick([jittered], sqlite_store, clock, next_slots=next_slots).created == []
    clock.set(due)
    assert len(run_tick([jittered], sqlite_store, clock, next_slots=next_slots).created) == 1


def test_a_pass_claims_hundreds_of_slots_in_few_transactions_each_once(
    state_store, scheduled_pipeline
):
    specs = [
        scheduled_pipeline({"cron": "* * * * *", "overlap": "allow"}, name=f"p{i:03d}")
        for i in range(CLAIMS_PER_TRANSACTION * 2 + 7)
    ]
    clock = FakeClock(START)
    first = run_tick(specs, state_store, clock)
    assert run_tick(specs, state_store, clock).created == []
    assert len(first.created) == len(set(first.created)) == len(specs)
    for spec in specs[:3]:
        (claim,) = state_store.schedules.slot_claims(spec.name)
        assert claim.run_id in first.created and claim.slot == datetime(
            2024, 3, 10, 12, 0, tzinfo=UTC
        )
        assert state_store.schedules.schedule_state(spec.name).last_slot == claim.slot
