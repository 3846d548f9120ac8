"""What a backfill does with each slot, from the slot's claim and ``--rerun`` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchpilot.scheduler.backfill_plan import (
    RerunPolicy,
    SlotAction,
    decide,
    plan_backfill,
    resume_interrupted,
)
from batchpilot.scheduler.slots import Slot
from batchpilot.states import RunStatus
from batchpilot.store.schedule_records import SlotClaimRecord

S = RunStatus


@pytest.mark.parametrize(
    ("status", "failed", "all_", "none"),
    [
        (None, "run", "run", "run"),
        (S.SUCCESS, "skip", "rerun", "skip"),
        (S.FAILED, "rerun", "rerun", "skip"),
        (S.CANCELLED, "rerun", "rerun", "skip"),
        (S.UNKNOWN, "rerun", "rerun", "skip"),
        (S.QUEUED, "resume", "resume", "resume"),
        (S.RUNNING, "resume", "resume", "resume"),
    ],
)
def test_each_claim_status_and_rerun_policy_gives_one_action(status, failed, all_, none):
    assert decide(status, RerunPolicy.failed) is SlotAction(failed)
    assert decide(status, RerunPolicy.all) is SlotAction(all_)
    assert decide(status, RerunPolicy.none) is SlotAction(none)


def test_plan_keeps_the_slot_order_and_names_the_run_that_holds_each_slot():
    day = [datetime(2024, 1, d, 2, tzinfo=UTC) for d in (1, 2, 3)]
    claim = SlotClaimRecord("daily", day[1], "run-2", "schedule", day[1], RunStatus.SUCCESS)
    plans = plan_backfill([Slot(d) for d in reversed(day)], [claim], RerunPolicy.failed)
    assert [(p.slot.at, p.action, p.run_id) for p in plans] == [
        (day[2], SlotAction.RUN, None),
        (day[1], SlotAction.SKIP, "run-2"),
        (day[0], SlotAction.RUN, None),
    ]
    assert plans[1].reason == "run run-2 success" and plans[0].reason == "never run"


def test_a_continued_backfill_resumes_the_failed_runs_its_interruption_stopped():
    day = [datetime(2024, 1, d, 2, tzinfo=UTC) for d in (1, 2)]
    claims = [
        SlotClaimRecord("daily", day[0], "stopped", "backfill", day[0], RunStatus.FAILED),
        SlotClaimRecord("daily", day[1], "failed", "backfill", day[1], RunStatus.FAILED),
    ]
    plans = resume_interrupted(
        plan_backfill([Slot(d) for d in day], claims, RerunPolicy.none), {"stopped"}
    )
    assert [(p.action, p.run_id) for p in plans] == [
        (SlotAction.RESUME, "stopped"),
        (SlotAction.SKIP, "failed"),
    ]
