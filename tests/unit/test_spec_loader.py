"""Pipeline files parse into one model; every error names the file, node and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec import TriggerRule, build_pipeline, load_pipeline_file
from batchpilot.spec.durations import parse_duration
from batchpilot.spec.model import RetryBackoff


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_edges_from_to_source_target_and_depends_on_all_make_upstream_links(tmp_path: Path):
    path = write(
        tmp_path,
        "p.yaml",
        """
name: p
nodes:
  - {id: a, type: empty}
  - {id: b, type: empty}
  - {id: c, type: empty, depends_on: [a]}
  - {id: d, type: empty}
edges:
  - {from: a, to: b}
  - {source: b, target: d}
  - {from: c, to: d}
""",
    )
    spec = load_pipeline_file(path)
    assert spec.node("b").upstream == ("a",)
    assert spec.node("c").upstream == ("a",)
    assert set(spec.node("d").upstream) == {"b", "c"}
    order = spec.node_ids
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("c") < order.index("d")


def test_json_pipeline_as_a_visual_builder_saves_it(tmp_path: Path):
    document = {
        "name": "builder",
        "nodes": [{"id": "x", "type": "empty"}, {"id": "y", "type": "empty"}],
        "edges": [{"source": "x", "target": "y", "id": "e1", "animated": True}],
    }
    spec = load_pipeline_file(write(tmp_path, "p.json", json.dumps(document)))
    assert spec.node("y").upstream == ("x",)


def test_default_args_apply_unless_the_node_overrides_them(tmp_path: Path):
    path = write(
        tmp_path,
        "p.yaml",
        """
name: p
default_args: {retries: 3, retry_delay: 10s, retry_backoff: exponential, timeout: 1h}
nodes:
  - {id: a, type: empty}
  - {id: b, type: empty, retries: 0, retry_delay: 5m, trigger_rule: all_done}
""",
    )
    spec = load_pipeline_file(path)
    a, b = spec.node("a"), spec.node("b")
    assert (a.retry.retries, a.retry.retry_delay_s, a.retry.backoff) == (
        3,
        10.0,
        RetryBackoff.EXPONENTIAL,
    )
    assert a.timeout_s == 3600.0
    assert (b.retry.retries, b.retry.retry_delay_s) == (0, 300.0)
    assert b.trigger_rule is TriggerRule.ALL_DONE


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (10, 10.0),
        ("10", 10.0),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        (0.5, 0.5),
    ],
)
def test_durations_accept_seconds_and_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "10x", "-5", "", True])
def test_invalid_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    path = write(tmp_path, "bad.yaml", "name: p\nnodes:\n  - {id: a, type: empty\n  - x\n")
    with pytest.raises(SpecError) as info:
        load_pipeline_file(path)
    assert str(path) in str(info.value)
    assert info.value.line is not None and info.value.line >= 3
    assert "invalid YAML" in str(info.value)


def test_json_syntax_error_names_file_and_line(tmp_path: Path):
    path = write(tmp_path, "bad.json", '{\n  "name": "p",\n  "nodes": [,]\n}')
    with pytest.raises(SpecError) as info:
        load_pipeline_file(path)
    assert info.value.line == 3
    assert f"{path}:3" in str(info.value)


def test_edge_to_missing_node_names_the_edge_field(tmp_path: Path):
    path = write(
        tmp_path,
        "p.yaml",
        """
name: p
nodes: [{id: a, type: empty}]
edges: [{from: a, to: ghost}]
""",
    )
    with pytest.raises(SpecErrors) as info:
        load_pipeline_file(path)
    message = str(info.value)
    assert "ghost" in message and "edges[0].target" in message and str(path) in message


def test_duplicate_id_is_named_with_its_line(tmp_path: Path):
    path = write(
        tmp_path, "p.yaml", "name: p\nnodes:\n  - {id: a, type: empty}\n  - {id: a, type: empty}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_pipeline_file(path)
    error = info.value.errors[0]
    assert (error.node_id, error.field, error.line) == ("a", "id", 4)
    assert "duplicate node id" in str(error)


def test_cycle_is_reported_with_its_path(tmp_path: Path):
    path = write(
        tmp_path,
        "p.yaml",
        """
name: p
nodes:
  - {id: a, type: empty, depends_on: [c]}
  - {id: b, type: empty, depends_on: [a]}
  - {id: c, type: empty, depends_on: [b]}
""",
    )
    with pytest.raises(SpecErrors) as info:
        load_pipeline_file(path)
    message = str(info.value)
    assert "cycle" in message
    cycle = message.split("cycle: ")[1].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_missing_and_unknown_node_fields_name_node_and_field(tmp_path: Path):
    path = write(
        tmp_path,
        "p.yaml",
        """
name: p
nodes:
  - {id: a}
  - {id: b, type: empty, retrys: 3}
""",
    )
    with pytest.raises(SpecErrors) as info:
        load_pipeline_file(path)
    found = {(e.node_id, e.field, e.reason) for e in info.value.errors}
    assert ("a", "type", "required field is missing") in found
    assert ("b", "retrys", "unknown field") in found


def test_invalid_trigger_rule_is_named(tmp_path: Path):
    with pytest.raises(SpecErrors) as info:
        build_pipeline(
            {"name": "p", "nodes": [{"id": "a", "type": "empty", "trigger_rule": "sometimes"}]}
        )
    assert info.value.errors[0].field == "trigger_rule"


def test_missing_file_is_a_spec_error(tmp_path: Path):
    with pytest.raises(SpecError, match="file not found"):
        load_pipeline_file(tmp_path / "nope.yaml")
