"""Pipeline files parse into one model; every error names the file, node and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec import TriggerRule, build_pipeline, load_pipeline_file
from batchpilot.spec.dates import parse_logical_date
from batchpilot.spec.documents import duplicate_json_key_line, parse_document
from batchpilot.spec.durations import parse_duration
from batchpilot.spec.limits import MAX_DURATION_S, check_document_size, check_workers
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


@pytest.mark.parametrize(
    "text",
    [
        "soon",
        "10x",
        "-5",
        "",
        True,
        "nan",
        "inf",
        "1e400",
        float("nan"),
        float("inf"),
        -1,
        10**400,
        "8d",
        604801,
    ],
)
def test_invalid_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_duration_may_be_up_to_seven_days():
    assert parse_duration("7d") == MAX_DURATION_S == 604800.0


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


def test_yaml_merge_keys_may_override_but_a_repeated_key_may_not(tmp_path: Path):
    merged = write(tmp_path, "m.yaml", "base: &b {a: 1, b: 2}\nnode: {<<: *b, b: 3}\n")
    assert parse_document(merged)["node"] == {"a": 1, "b": 3}
    repeated = write(tmp_path, "r.yaml", "node:\n  a: 1\n  b: 2\n  a: 3\n")
    with pytest.raises(SpecError) as info:
        parse_document(repeated)
    assert info.value.line == 4 and "duplicate key 'a' (first on line 2)" in info.value.reason


def test_a_repeated_json_key_is_found_in_its_own_object_only():
    text = '{"a": {"k": 1},\n "b": {"k": 2},\n "c": {"x": [1, {"k": 3}],\n       "k": 4, "k": 5}}'
    assert duplicate_json_key_line(text, "k") == 4


def test_yaml_mappings_remember_their_line(tmp_path: Path):
    document = parse_document(write(tmp_path, "p.yaml", "name: p\nnodes:\n  - {id: a}\n"))
    assert document["nodes"][0].line == 3


def test_shared_alias_trees_are_measured_without_expanding_them():
    leaf = ["x"] * 9
    tree = leaf
    for _ in range(9):  # 9**10 leaves once expanded, 10 lists in memory
        tree = [tree] * 9
    with pytest.raises(SpecError, match=r"expands to .* values .* the limit is 100,000"):
        check_document_size({"params": tree})
    check_document_size({"params": [leaf] * 9})  # 91 values: fine


def test_a_document_of_long_text_repeated_by_aliases_is_refused():
    text = "x" * 100_000
    with pytest.raises(SpecError, match=r"characters of text .* the limit is 4,000,000"):
        check_document_size({"params": [text] * 50})


def test_a_list_that_contains_itself_is_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(SpecError, match="refers to a mapping or list that contains it"):
        check_document_size({"params": loop})


def test_a_python_document_nested_too_deep_is_refused():
    deep: list = []
    for _ in range(60):
        deep = [deep]
    with pytest.raises(SpecError, match="more than 50 levels"):
        build_pipeline(
            {"name": "p", "nodes": [{"id": "a", "type": "empty"}], "params": {"d": deep}}
        )


@pytest.mark.parametrize("text", ["2026-13-45", "yesterday", "20261120", "2026-02-29", " "])
def test_a_logical_date_must_be_a_calendar_date(text: str):
    with pytest.raises(SpecError, match="is not a calendar date: use YYYY-MM-DD"):
        parse_logical_date(text)
    assert parse_logical_date("2028-02-29") == "2028-02-29"


@pytest.mark.parametrize("workers", [0, -1, 257, True, 2.0])
def test_workers_must_be_a_whole_number_from_1_to_256(workers):
    with pytest.raises(SpecError, match="from 1 to 256"):
        check_workers(workers)
    check_workers(None)
    check_workers(256)


def test_limits_apply_to_python_defined_pipelines_too():
    with pytest.raises(SpecErrors) as info:
        build_pipeline(
            {
                "name": "p" * 101,
                "max_workers": True,
                "nodes": [{"id": "a" * 101, "type": "empty", "retries": 101, "timeout": 0}],
            }
        )
    found = {(e.node_id, e.field) for e in info.value.errors}
    assert found == {
        (None, "name"),
        (None, "max_workers"),
        ("#1", "id"),
        ("#1", "retries"),
        ("#1", "timeout"),
    }


def test_a_logical_date_may_be_given_as_a_date_object():
    from datetime import date, datetime

    assert parse_logical_date(date(2026, 11, 20)) == "2026-11-20"
    assert parse_logical_date(datetime(2026, 11, 20, 5, 30)) == "2026-11-20"
