"""A task's output, typed, and its two encodings: the state store's JSON and Airflow's XCom."""

from __future__ import annotations

import datetime as dt

from batchpilot.artifacts import ArtifactRef
from batchpilot.engine.outputs import TaskOutput, upstream_inputs
from batchpilot.errors import StepError, first_line
from batchpilot.steps.base import StepResult

MAIN = ArtifactRef("/runs/r/artifacts/t.arrow", 3)
REJECTS = ArtifactRef("/runs/r/artifacts/t.rejects.arrow", 1)


def produced() -> TaskOutput:
    return TaskOutput.from_result(
        StepResult(
            output=MAIN,
            rows_in=4,
            rows_out=3,
            rows_rejected=1,
            side_outputs={"rejects": REJECTS},
            metadata={"valid_share": 0.75, "day": dt.date(2026, 1, 2)},
        )
    )


def test_the_store_keeps_references_and_metadata_in_the_shape_it_always_had():
    assert produced().to_json() == {
        "artifact": {"path": MAIN.path, "rows": 3},
        "side_outputs": {"rejects": {"path": REJECTS.path, "rows": 1}},
        "metadata": {"valid_share": 0.75, "day": "2026-01-02"},
    }


def test_what_the_store_holds_reads_back_as_the_same_output():
    stored = produced().to_json()
    back = TaskOutput.from_json(stored, rows_in=4, rows_out=3, rows_rejected=1)
    assert back == TaskOutput.from_json(back.to_json(), rows_in=4, rows_out=3, rows_rejected=1)
    assert (back.artifact, dict(back.side_outputs)) == (MAIN, {"rejects": REJECTS})
    assert back.metadata == {"valid_share": 0.75, "day": "2026-01-02"}


def test_a_task_without_output_reads_back_empty():
    for stored in (None, {}, {"artifact": None, "side_outputs": {}, "metadata": {}}):
        empty = TaskOutput.from_json(stored)
        assert (empty.artifact, dict(empty.side_outputs), dict(empty.metadata)) == (None, {}, {})


def test_xcom_carries_references_and_row_counts_never_rows_or_metadata():
    payload = produced().to_xcom()
    assert payload == {
        "artifact": {"path": MAIN.path, "rows": 3},
        "side_outputs": {"rejects": {"path": REJECTS.path, "rows": 1}},
        "rows_in": 4,
        "rows_out": 3,
        "rows_rejected": 1,
    }
    back = TaskOutput.from_xcom(payload)
    assert (back.artifact, back.rows_in, back.rows_out, back.rows_rejected) == (MAIN, 4, 3, 1)


def test_a_tasks_inputs_are_its_upstream_outputs_by_node_id():
    outputs = {"a": produced(), "skipped": TaskOutput(), "other": TaskOutput(artifact=REJECTS)}
    inputs, side = upstream_inputs(["a", "skipped", "missing"], outputs)
    assert inputs == {"a": MAIN}
    assert side == {"a": {"rejects": REJECTS}}


def test_an_errors_first_line_names_foreign_errors_by_type():
    assert first_line(StepError("table missing\ntraceback…")) == "table missing"
    assert first_line(KeyError("id")) == "KeyError: 'id'"
    assert first_line(RuntimeError()) == "RuntimeError"
    assert len(first_line(StepError("x" * 900))) == 500
