"""Backfills in the state store, on SQLite and PostgreSQL: continued by range, their runs,
the runs their own interruption stopped, cancel requests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import RunStore
from batchpilot.store.backfills import BackfillNotFound, BackfillStatus, BackfillStore

JAN_1 = datetime(2024, 1, 1, 2, tzinfo=UTC)


def start(backfills: BackfillStore, new_id: str, end: str = "2024-01-31"):
    return backfills.start_or_continue(
        new_id=new_id,
        pipeline="daily",
        range_start="2024-01-01",
        range_end=end,
        every=None,
        options={"concurrency": 4},
        slot_count=31,
    )


def test_the_same_range_continues_an_unfinished_backfill_and_not_an_ended_one(
    state_store: RunStore,
):
    backfills = BackfillStore(state_store.engine)
    first, continued = start(backfills, "bf-1")
    assert (first.backfill_id, continued, first.status) == ("bf-1", False, BackfillStatus.RUNNING)
    again, continued = start(backfills, "bf-2")
    assert (again.backfill_id, continued) == ("bf-1", True)
    other, continued = start(backfills, "bf-3", end="2024-01-30")  # another range: new
    assert (other.backfill_id, continued) == ("bf-3", False)

    backfills.set_status("bf-1", BackfillStatus.FAILED)
    after_end, continued = start(backfills, "bf-4")
    assert (after_end.backfill_id, continued) == ("bf-4", False)
    backfills.request_cancel("bf-4")
    after_cancel, continued = start(backfills, "bf-5")
    assert (after_cancel.backfill_id, continued) == ("bf-5", False)
    assert backfills.get("bf-4").cancel_requested is True
    assert backfills.list()[0].backfill_id == "bf-5"


def test_runs_are_listed_once_with_their_status_and_interruptions(state_store: RunStore):
    backfills = BackfillStore(state_store.engine)
    start(backfills, "bf-1")
    state_store.create_run(
        run_id="run-1", pipeline="daily", spec={"name": "daily", "nodes": []}, params={},
        ds="2024-01-01", source_path=None, task_ids=[], slot=JAN_1,
        triggered_by=RunTrigger.BACKFILL,
    )  # fmt: skip
    backfills.add_run("bf-1", "run-1", JAN_1)
    backfills.add_run("bf-1", "run-1", JAN_1)
    backfills.add_run("bf-1", "purged", JAN_1.replace(day=2))
    runs = backfills.runs("bf-1")
    assert [(r.run_id, r.slot, r.status) for r in runs] == [
        ("run-1", JAN_1, RunStatus.QUEUED),
        ("purged", JAN_1.replace(day=2), RunStatus.UNKNOWN),
    ]
    assert backfills.interrupted_runs("bf-1") == set()
    backfills.mark_interrupted("bf-1", ["run-1"])
    assert backfills.interrupted_runs("bf-1") == {"run-1"}


def test_a_backfill_is_found_by_a_unique_prefix_only(state_store: RunStore):
    backfills = BackfillStore(state_store.engine)
    start(backfills, "bf-abc")
    start(backfills, "bf-abd", end="2024-01-02")
    assert backfills.get("bf-abc").backfill_id == "bf-abc"
    assert backfills.get("bf-abd").backfill_id == "bf-abd"
    for ambiguous_or_unknown in ("bf-ab", "bf-x", "bf-%", ""):
        with pytest.raises(BackfillNotFound, match="backfill list"):
            backfills.get(ambiguous_or_unknown)
