"""Airflow's states map onto batchpilot's; anything unknown becomes ``unknown``, never an error."""

from __future__ import annotations

import pytest

from batchpilot.airflow.states import (
    compensation_state_from_airflow,
    run_status_from_airflow,
    task_state_from_airflow,
)
from batchpilot.states import RunStatus, TaskState

TASK_TABLE = [
    (None, TaskState.PENDING),
    ("none", TaskState.PENDING),
    ("scheduled", TaskState.PENDING),
    ("queued", TaskState.PENDING),
    ("running", TaskState.RUNNING),
    ("up_for_retry", TaskState.RETRY),
    ("up_for_reschedule", TaskState.RUNNING),
    ("restarting", TaskState.RETRY),
    ("deferred", TaskState.RUNNING),
    ("success", TaskState.SUCCESS),
    ("failed", TaskState.FAILED),
    ("upstream_failed", TaskState.SKIPPED),
    ("skipped", TaskState.SKIPPED),
    ("removed", TaskState.CANCELLED),
    ("SUCCESS", TaskState.SUCCESS),
    ("a_state_from_airflow_4", TaskState.UNKNOWN),
    ("", TaskState.UNKNOWN),
    (42, TaskState.UNKNOWN),
]


@pytest.mark.parametrize(("airflow_state", "expected"), TASK_TABLE)
def test_task_states_map_onto_batchpilot_states(airflow_state, expected):
    assert task_state_from_airflow(airflow_state) is expected


@pytest.mark.parametrize(
    ("airflow_state", "expected"),
    [
        ("queued", RunStatus.QUEUED),
        ("running", RunStatus.RUNNING),
        ("success", RunStatus.SUCCESS),
        ("failed", RunStatus.FAILED),
        ("paused", RunStatus.UNKNOWN),
        (None, RunStatus.UNKNOWN),
    ],
)
def test_dag_run_states_map_onto_run_statuses(airflow_state, expected):
    assert run_status_from_airflow(airflow_state) is expected


@pytest.mark.parametrize(
    ("airflow_state", "expected"),
    [
        ("running", TaskState.COMPENSATING),
        ("up_for_retry", TaskState.COMPENSATING),
        ("success", TaskState.COMPENSATED),
        ("failed", TaskState.COMPENSATION_FAILED),
        ("skipped", None),  # nothing to undo: the task keeps its own state
        ("scheduled", None),
        (None, None),
        ("something_new", None),
    ],
)
def test_a_compensation_task_state_becomes_its_tasks_compensation_state(airflow_state, expected):
    assert compensation_state_from_airflow(airflow_state) is expected
