"""Planning atomic groups is a pure function of the pipeline, the members' connections
and the step types that can join a group."""

from __future__ import annotations

from typing import Any

import pytest

from batchpilot.engine.group_plan import (
    TransactionGroup,
    group_token,
    joinable_types,
    member_connection,
    plan_groups,
)
from batchpilot.engine.transactions import run_groups
from batchpilot.spec import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.steps.empty import EmptyStep
from batchpilot.steps.registry import default_registry
from batchpilot.steps.sql import SqlConfig, SqlStep

SQL = {"connection": "db", "sql": "SELECT 1"}


def pipeline(*nodes: dict[str, Any]) -> PipelineSpec:
    return build_pipeline({"name": "books", "nodes": list(nodes)})


def node(node_id: str, group: str | None = "g", after: str | None = None, **extra: Any) -> dict:
    found: dict[str, Any] = {"id": node_id, "type": "sql", "config": SQL, **extra}
    if group:
        found["transaction"] = group
    if after:
        found["depends_on"] = [after]
    return found


CHAIN = pipeline(node("a"), node("b", after="a"), node("c", after="b"), node("d", None, "c"))
ON_DB = {"a": "db", "b": "db", "c": "db"}


def test_a_chain_on_one_connection_is_one_group_in_chain_order():
    groups, errors = plan_groups(CHAIN, ON_DB, {"sql"})

    assert errors == []
    assert groups == {"g": TransactionGroup("g", ("a", "b", "c"), "db", "sql")}
    assert (groups["g"].first, groups["g"].last) == ("a", "c")
    assert group_token(groups["g"], 2) == "a:2"


@pytest.mark.parametrize(
    ("spec", "connections", "joinable", "expected"),
    [
        (CHAIN, {**ON_DB, "c": "other"}, {"sql"}, [("c", "config.connection", "spans two")]),
        (
            pipeline(node("a"), node("b", "h", "a"), node("c", after="b")),
            ON_DB,
            {"sql"},
            [
                ("c", "transaction", "must be a chain: 'c' must depend on 'a'"),
                ("a", "transaction", "b depend(s) on 'a' before the group commits"),
            ],
        ),
        (
            pipeline(node("a"), node("b", after="a"), node("peek", None, "a")),
            ON_DB,
            {"sql"},
            [("a", "transaction", "peek depend(s) on 'a' before the group commits")],
        ),
        (
            pipeline(
                node("a"), {"id": "b", "type": "empty", "transaction": "g", "depends_on": ["a"]}
            ),
            ON_DB,
            {"sql"},
            [("b", "transaction", "holds only steps that share a database transaction")],
        ),
        (
            pipeline(
                node("a"), {"id": "b", "type": "empty", "transaction": "g", "depends_on": ["a"]}
            ),
            ON_DB,
            {"sql", "empty"},
            [("b", "type", "mixes step types sql (a) and empty")],
        ),
    ],
    ids=["two connections", "not a chain", "seen before commit", "cannot join", "mixed types"],
)
def test_a_group_breaking_a_rule_is_reported_on_the_node_and_field_to_fix(
    spec: PipelineSpec, connections: dict, joinable: set[str], expected: list[tuple[str, str, str]]
):
    _, errors = plan_groups(spec, connections, joinable)

    assert len(errors) == len(expected)
    for error, (node_id, field, words) in zip(errors, expected, strict=True):
        assert (error.node_id, error.field) == (node_id, field)
        assert words in error.reason


def test_a_group_of_a_type_that_cannot_join_is_not_planned_unless_types_go_unchecked():
    spec = pipeline(
        node("a"), {"id": "b", "type": "empty", "transaction": "g", "depends_on": ["a"]}
    )
    assert plan_groups(spec, ON_DB, {"sql"})[0] == {}
    assert list(plan_groups(spec, ON_DB, None)[0]) == []  # mixed types are never planned
    assert list(plan_groups(CHAIN, ON_DB, None)[0]) == ["g"]


def test_the_joinable_types_are_those_whose_step_class_implements_the_protocol():
    spec = pipeline(
        node("a"),
        {"id": "b", "type": "empty", "transaction": "g", "depends_on": ["a"]},
        {"id": "c", "type": "no.such.type", "transaction": "g", "depends_on": ["b"]},
    )
    assert joinable_types(spec, default_registry()) == {"sql"}


def test_a_member_works_on_the_connection_its_first_connection_field_names():
    assert member_connection(SqlStep(SqlConfig(connection="dwh", sql="SELECT 1"))) == "dwh"
    assert member_connection(EmptyStep(EmptyStep.Config())) is None


def test_a_run_renders_each_group_member_connection_with_the_run_params():
    spec = build_pipeline(
        {
            "name": "books",
            "params": {"target": "dev"},
            "nodes": [
                node("a", config={"connection": "{{ params.target }}", "sql": "SELECT 1"}),
                node(
                    "b", after="a", config={"connection": "{{ params.target }}", "sql": "SELECT 2"}
                ),
            ],
        }
    )

    groups = run_groups(spec, {"target": "prod"}, "2026-12-01", "run-1", default_registry())

    assert groups == {"g": TransactionGroup("g", ("a", "b"), "prod", "sql")}
