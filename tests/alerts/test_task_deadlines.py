"""The task-level ``deadline: 20m``: counted from the run's start, fired once by ``serve``'s
monitor loop while the run is running (or at the end of a run whose task succeeded late),
closed by the next run whose task succeeds in time."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from batchpilot.clock import FakeClock
from batchpilot.monitor.evaluate import evaluate_run
from batchpilot.monitor.serve_loop import MonitorLoop
from batchpilot.monitor.task_deadlines import decide_task_deadline
from batchpilot.notify import ChannelRegistry, Message, parse_channel
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunStore, TaskRecord
from batchpilot.store.tables import task_instances
from tests.alerts.conftest import START
from tests.alerts.history import add_run, pipeline_document, set_run_state
from tests.cli_runner import Cli

TWENTY_MIN = 20 * 60.0


def task(state: TaskState, ended_after_min: float | None = None) -> TaskRecord:
    ended = START + timedelta(minutes=ended_after_min) if ended_after_min is not None else None
    return TaskRecord(
        run_id="r",
        task_id="load",
        position=1,
        state=state,
        attempts=1,
        rows_in=None,
        rows_out=None,
        rows_rejected=None,
        started_at=START,
        ended_at=ended,
        duration_s=None,
        error=None,
        output=None,
    )


DECISIONS = [
    pytest.param(task(TaskState.RUNNING), 10, None, None, id="running, 10 min in: too early"),
    pytest.param(
        task(TaskState.RUNNING),
        21,
        True,
        "not done 21 min after the run's start (running)",
        id="running past the deadline",
    ),
    pytest.param(
        task(TaskState.PENDING),
        30,
        True,
        "not done 30 min after the run's start (pending)",
        id="never started, upstream slow",
    ),
    pytest.param(
        task(TaskState.SUCCESS, 12),
        30,
        False,
        "succeeded 12 min after the run's start",
        id="succeeded in time",
    ),
    pytest.param(
        task(TaskState.SUCCESS, 25),
        30,
        True,
        "succeeded 25 min after the run's start",
        id="succeeded late",
    ),
    pytest.param(task(TaskState.FAILED, 5), 30, None, None, id="failed: the failure rule"),
]


@pytest.mark.parametrize(("record", "minutes", "fired", "observed"), DECISIONS)
def test_decide_task_deadline(
    record: TaskRecord, minutes: float, fired: bool | None, observed: str | None
):
    now = START + timedelta(minutes=minutes)
    verdict = decide_task_deadline(record, TWENTY_MIN, run_started_at=START, now=now)
    assert (verdict.fired if verdict else None) == fired
    if verdict is not None:
        assert (verdict.rule, verdict.task, verdict.observed) == ("deadline", "load", observed)
        assert verdict.threshold == "succeeded within 20 min of the run's start"
        assert verdict.baseline == "the run started at 02:00 UTC"


def document() -> dict:  # type: ignore[type-arg]
    doc = pipeline_document("nightly", notify={"default": ["oncall"]})
    for node in doc["nodes"]:
        if node["id"] == "load":
            node["monitoring"] = {"deadline": "20m"}
    return doc


def set_task(store: RunStore, run_id: str, state: TaskState, ended: datetime | None) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(task_instances)
            .where(task_instances.c.run_id == run_id, task_instances.c.task_id == "load")
            .values(state=state.value, started_at=START, ended_at=ended)
        )


def titles(store: RunStore) -> list[str]:
    return [Message.from_dict(r.message).title for r in store.list_notifications()]


ALERT = "nightly: not done by its deadline (task load)"


def test_serve_alerts_once_while_the_task_is_late_and_the_next_good_run_recovers(
    store: RunStore,
):
    clock = FakeClock(START)
    channels = ChannelRegistry([parse_channel("oncall", "webhook+http://127.0.0.1:9/hook")])
    loop = MonitorLoop(store, channels, clock, threading.Event())
    late = add_run(store, document(), status=RunStatus.RUNNING, started_at=START, duration_s=0)
    set_run_state(store, late, RunStatus.RUNNING, started_at=START, ended_at=None)
    set_task(store, late, TaskState.RUNNING, None)
    clock.advance(19 * 60)
    loop.task_deadlines.check()
    assert store.alerts.list() == []
    clock.advance(2 * 60)  # 21 min after the run's start, the task still running
    for _ in range(3):
        loop.step()
    assert titles(store) == [ALERT]
    [alert] = store.alerts.list(open_only=True)
    assert (alert.rule, alert.task, alert.run_id) == ("deadline", "load", late)
    assert alert.observed == "not done 21 min after the run's start (running)"
    # the run ends at 25 min, the task late: the open episode says nothing more
    set_task(store, late, TaskState.SUCCESS, START + timedelta(minutes=25))
    set_run_state(
        store, late, RunStatus.SUCCESS, started_at=START, ended_at=START + timedelta(minutes=25)
    )
    clock.advance(4 * 60)
    loop.step()
    assert titles(store) == [ALERT]
    assert [a.state.value for a in store.alerts.list()] == ["open"]
    # the next run's task succeeds 5 minutes in: one recovery notice
    good = add_run(store, document(), status=RunStatus.SUCCESS, started_at=START, duration_s=300)
    set_task(store, good, TaskState.SUCCESS, START + timedelta(minutes=5))
    evaluate_run(store, good, defined_channels={"oncall"}, clock=clock)
    assert titles(store) == [ALERT, f"Recovered: {ALERT}"]
    assert store.alerts.list(open_only=True) == []


def test_a_plain_run_whose_task_succeeded_late_alerts_at_its_end(store: RunStore):
    clock = FakeClock(START + timedelta(hours=1))
    run_id = add_run(store, document(), status=RunStatus.SUCCESS, started_at=START, duration_s=1800)
    set_task(store, run_id, TaskState.SUCCESS, START + timedelta(minutes=28))
    evaluate_run(store, run_id, defined_channels={"oncall"}, clock=clock)
    [alert] = store.alerts.list(open_only=True)
    assert (alert.task, alert.observed) == ("load", "succeeded 28 min after the run's start")
    assert titles(store) == [ALERT]


def test_a_failed_run_gets_its_failure_alert_not_a_task_deadline_one(store: RunStore):
    clock = FakeClock(START + timedelta(hours=1))
    run_id = add_run(store, document(), status=RunStatus.FAILED, started_at=START, duration_s=1800)
    set_task(store, run_id, TaskState.FAILED, START + timedelta(minutes=28))
    evaluate_run(store, run_id, defined_channels={"oncall"}, clock=clock)
    assert [a.rule for a in store.alerts.list()] == ["failure"]


def test_a_task_deadline_that_is_not_a_duration_exits_2_naming_file_node_and_field(
    cli_in_process: Cli, tmp_path: Path
):
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nnodes:\n  - {id: a, type: empty}\n"
        "  - {id: b, type: empty, depends_on: [a], monitoring: {deadline: twenty minutes}}\n"
    )
    for command in ("run", "validate"):
        result = cli_in_process(command, str(path))
        assert result.code == 2, result
        text = result.stdout + result.stderr
        assert "p.yaml" in text and "'b'" in text and "monitoring.deadline" in text
        assert "'twenty minutes'" in text and "Traceback" not in text
    assert cli_in_process("runs", "list", "-o", "json").json() == []


def test_a_task_deadline_survives_the_copy_stored_with_a_run():
    from batchpilot.spec.loader import build_pipeline
    from batchpilot.spec.serialize import spec_to_document

    spec = build_pipeline(document())
    assert spec.monitoring.task_deadlines() == {"load": TWENTY_MIN}
    assert build_pipeline(spec_to_document(spec)) == spec
