"""transform.validate: rules split rows into valid ones and rejects with a reason."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from batchpilot.artifacts import read_table
from batchpilot.errors import PermanentStepError

from .helpers import make_context, make_step, output_table, run_step

USERS = pa.table(
    {
        "id": [1, 2, 2, 4, 5],
        "email": ["a@x.io", None, "b@x.io", "not-an-email", "c@x.io"],
        "age": [30, 17, 45, 200, None],
        "country": ["FR", "DE", "XX", "FR", "DE"],
    }
)


def test_validate_rejects_go_to_rejects_output_with_reason(tmp_path):
    ctx = make_context(tmp_path, {"up": USERS})

    result = run_step(
        "transform.validate",
        ctx,
        rules=[
            {"column": "email", "not_null": True, "regex": "^[^@]+@[^@]+$"},
            {"column": "age", "min": 18, "max": 120},
        ],
    )

    assert output_table(result).column("id").to_pylist() == [1, 2, 5]
    rejects = output_table(result, "rejects")
    assert rejects.column("id").to_pylist() == [2, 4]
    assert rejects.column("_reject_reason").to_pylist() == [
        "email: not_null; age: min 18",
        "email: regex ^[^@]+@[^@]+$; age: max 120",
    ]
    assert (result.rows_in, result.rows_out, result.rows_rejected) == (5, 3, 2)
    assert result.metadata["valid"] == 3
    assert result.metadata["rejected"] == 2
    assert result.metadata["valid_ratio"] == 0.6


def test_validate_unique_rejects_every_repeated_value_and_allowed_lists_values(tmp_path):
    ctx = make_context(tmp_path, {"up": USERS})

    result = run_step(
        "transform.validate",
        ctx,
        rules=[{"column": "id", "unique": True}, {"column": "country", "allowed": ["FR", "DE"]}],
    )

    assert output_table(result).column("id").to_pylist() == [1, 4, 5]
    assert output_table(result, "rejects").column("_reject_reason").to_pylist() == [
        "id: unique",
        "id: unique; country: allowed",
    ]


def test_validate_below_min_valid_ratio_fails_after_writing_rejects(tmp_path):
    ctx = make_context(tmp_path, {"up": USERS})

    with pytest.raises(PermanentStepError) as failure:
        run_step(
            "transform.validate",
            ctx,
            rules=[{"column": "age", "min": 18, "max": 120}],
            min_valid_ratio=0.8,
        )

    message = str(failure.value)
    assert "60.00%" in message and "min_valid_ratio 80.00%" in message
    rejects_path = ctx.artifacts.path_for(ctx.task_id, "rejects")
    assert rejects_path.name in message
    assert read_table(str(rejects_path)).column("id").to_pylist() == [2, 4]


def test_validate_above_max_rejected_ratio_fails(tmp_path):
    ctx = make_context(tmp_path, {"up": USERS})

    with pytest.raises(PermanentStepError, match=r"above max_rejected_ratio 1\.00%"):
        run_step(
            "transform.validate",
            ctx,
            rules=[{"column": "email", "not_null": True}],
            max_rejected_ratio=0.01,
        )


def test_validate_within_thresholds_succeeds(tmp_path):
    ctx = make_context(tmp_path, {"up": USERS})

    result = run_step(
        "transform.validate",
        ctx,
        rules=[{"column": "email", "not_null": True}],
        min_valid_ratio=0.8,
        max_rejected_ratio=0.2,
    )

    assert result.rows_rejected == 1
    assert "rejects" in result.side_outputs


def test_validate_unknown_column_in_a_rule_is_named(tmp_path):
    ctx = make_context(tmp_path, {"up": USERS})

    with pytest.raises(PermanentStepError, match=r"unknown column.*mail"):
        run_step("transform.validate", ctx, rules=[{"column": "mail", "not_null": True}])


def test_validate_rule_value_of_the_wrong_type_is_named(tmp_path):
    ctx = make_context(tmp_path, {"up": USERS})

    with pytest.raises(PermanentStepError, match="'min' on column 'age'"):
        run_step("transform.validate", ctx, rules=[{"column": "age", "min": "old"}])


def test_validate_config_errors_are_caught_before_running():
    with pytest.raises(ValidationError, match="has no check"):
        make_step("transform.validate", rules=[{"column": "age"}])
    with pytest.raises(ValidationError, match="invalid regex"):
        make_step("transform.validate", rules=[{"column": "age", "regex": "("}])


def test_validate_all_valid_writes_an_empty_rejects_output(tmp_path):
    ctx = make_context(tmp_path, {"up": USERS})

    result = run_step("transform.validate", ctx, rules=[{"column": "id", "not_null": True}])

    rejects = output_table(result, "rejects")
    assert rejects.num_rows == 0
    assert rejects.column_names == [*USERS.column_names, "_reject_reason"]
    assert result.metadata["valid_ratio"] == 1.0
