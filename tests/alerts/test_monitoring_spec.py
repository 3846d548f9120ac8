"""``monitoring:`` and ``notify:`` in a pipeline file: defaults, tuning, and bad input refused
with the file, the field and the value (exit 2 from run and validate, nothing recorded)."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any

import pytest

from batchpilot.errors import SpecErrors
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.serialize import spec_to_document
from tests.cli_runner import Cli

NODES = [{"id": "load", "type": "empty"}]


def pipeline(**extra: Any) -> dict[str, Any]:
    return {"name": "p", "nodes": NODES, **extra}


def test_every_rule_is_on_by_default():
    spec = build_pipeline(pipeline())
    rules = spec.monitoring
    assert rules.slow.enabled and rules.slow.factor == 2
    assert rules.low_volume.enabled and rules.low_volume.min_ratio == 0.8
    assert rules.rejects.enabled and rules.rejects.max_ratio == 0.01
    assert rules.failure and rules.deadline is None and rules.remind_every_s is None
    assert spec.notify is None


def test_rules_are_tuned_and_switched_off_and_survive_the_stored_copy():
    spec = build_pipeline(
        pipeline(
            schedule="0 2 * * *",
            monitoring={"slow": {"factor": 3}, "rejects": False, "deadline": "06:00"},
            notify={"failure": ["oncall"], "default": "data-team"},
            nodes=[{"id": "load", "type": "empty", "monitoring": {"rejects": {"max_ratio": 0.1}}}],
        )
    )
    assert spec.monitoring.slow.factor == 3
    assert not spec.monitoring.rejects.enabled
    assert spec.monitoring.rejects_rule_of("load").max_ratio == 0.1
    assert spec.monitoring.deadline == time(6, 0)
    assert spec.notify == {"failure": ("oncall",), "default": ("data-team",)}
    assert build_pipeline(spec_to_document(spec)) == spec


BAD = [
    ({"monitoring": {"slowness": True}}, "monitoring.slowness", "unknown rule 'slowness'"),
    ({"monitoring": {"slow": {"factor": 0.5}}}, "monitoring.slow.factor", "got 0.5"),
    ({"monitoring": {"slow": {"factor": 1000}}}, "monitoring.slow.factor", "got 1000"),
    ({"monitoring": {"slow": {"factr": 3}}}, "monitoring.slow.factr", "unknown setting"),
    ({"monitoring": {"slow": "yes"}}, "monitoring.slow", "got 'yes'"),
    ({"monitoring": {"rejects": {"max_ratio": 1.5}}}, "monitoring.rejects.max_ratio", "1.5"),
    (
        {"monitoring": {"low_volume": {"expected_rows": -3}}},
        "monitoring.low_volume.expected_rows",
        "-3",
    ),
    (
        {"schedule": "0 2 * * *", "monitoring": {"deadline": "6 am"}},
        "monitoring.deadline",
        "got '6 am'",
    ),
    (
        {"schedule": "0 2 * * *", "monitoring": {"deadline": "24:00"}},
        "monitoring.deadline",
        "got '24:00'",
    ),
    ({"monitoring": {"deadline": "06:00"}}, "monitoring.deadline", "needs a schedule"),
    ({"monitoring": {"remind_every": "10s"}}, "monitoring.remind_every", "at most one a minute"),
    ({"monitoring": {"failure": "sometimes"}}, "monitoring.failure", "got 'sometimes'"),
    ({"monitoring": ["slow"]}, "monitoring", "expected a mapping"),
    ({"notify": {"failures": ["oncall"]}}, "notify.failures", "unknown route 'failures'"),
    ({"notify": {"failure": [3]}}, "notify.failure", "got [3]"),
    (
        {"nodes": [{"id": "load", "type": "empty", "monitoring": {"deadline": "06:00"}}]},
        "monitoring.deadline",
        "a task's deadline is a duration counted from the run's start",
    ),
    (
        {"nodes": [{"id": "load", "type": "empty", "monitoring": {"deadline": "soon"}}]},
        "monitoring.deadline",
        "got 'soon'",
    ),
    (
        {"nodes": [{"id": "load", "type": "empty", "monitoring": {"deadline": 0}}]},
        "monitoring.deadline",
        "got 0",
    ),
]


@pytest.mark.parametrize(("extra", "field", "words"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_monitoring_is_a_spec_error_naming_the_field_and_value(
    extra: dict[str, Any], field: str, words: str
):
    with pytest.raises(SpecErrors) as caught:
        build_pipeline(pipeline(**extra), source_path="p.yaml")
    problems = [e for e in caught.value.errors if e.field == field]
    assert problems, caught.value
    assert problems[0].path == "p.yaml"
    assert words in problems[0].reason


def write(folder: Path, body: str) -> Path:
    path = folder / "p.yaml"
    path.write_text(body)
    return path


def test_run_and_validate_refuse_a_bad_deadline_with_exit_2_and_record_nothing(
    cli_in_process: Cli, tmp_path: Path
):
    path = write(
        tmp_path,
        'name: p\nschedule: "0 2 * * *"\nmonitoring: {deadline: "6h"}\n'
        "nodes: [{id: a, type: empty}]\n",
    )
    for command in ("run", "validate"):
        result = cli_in_process(command, str(path))
        assert result.code == 2
        text = result.stdout + result.stderr
        assert "field 'monitoring.deadline'" in text and "'6h'" in text and "p.yaml" in text
    assert cli_in_process("runs", "list", "-o", "json").json() == []


def test_an_unknown_channel_in_a_route_is_refused_naming_route_and_channel(
    cli_in_process: Cli, tmp_path: Path
):
    cli_in_process.env["BATCHPILOT_NOTIFY_ONCALL"] = "webhook+http://127.0.0.1:9/hook"
    path = write(
        tmp_path,
        "name: p\nnotify: {failure: [oncall], slow: [data-team]}\nnodes: [{id: a, type: empty}]\n",
    )
    for command in ("run", "validate"):
        result = cli_in_process(command, str(path))
        assert result.code == 2, result
        text = result.stdout + result.stderr
        assert "field 'notify.slow'" in text and "'data-team'" in text
        assert "notify.failure" not in text
    assert cli_in_process("runs", "list", "-o", "json").json() == []
