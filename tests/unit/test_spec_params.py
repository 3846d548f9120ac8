"""Typed parameters: declarations in the spec, and the one check of every run's values."""

from __future__ import annotations

import pytest

from batchpilot.airflow.params import param_arguments
from batchpilot.airflow.runtime import PipelineInfo
from batchpilot.errors import PermanentStepError, SpecErrors
from batchpilot.spec import build_pipeline
from batchpilot.spec.loader import build_pipeline as rebuild
from batchpilot.spec.params import ParamText, ParamType, preview_params, resolve_params
from batchpilot.spec.serialize import spec_to_document

PARAMS = {
    "min_amount": 0,
    "label": "daily",
    "count": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
    "region": {"enum": ["north", "south"], "description": "sales region"},
    "code": {"type": "string", "pattern": "^[0-9]{3}$", "default": "007"},
    "dry_run": {"type": "boolean", "default": False},
    "tables": {"type": "array", "default": ["a"]},
}


def spec_with(params: dict, *, path: str | None = "p.yaml"):
    return build_pipeline(
        {"name": "p", "params": params, "nodes": [{"id": "a", "type": "empty"}]},
        source_path=path,
    )


def errors_of(params: dict, supplied: dict) -> list[tuple[str | None, str]]:
    with pytest.raises(SpecErrors) as caught:
        resolve_params(spec_with(params), supplied)
    return [(e.field, e.reason) for e in caught.value.errors]


def test_bare_values_are_defaults_and_declarations_give_type_bounds_and_required():
    spec = spec_with(PARAMS)
    assert spec.params == {
        "min_amount": 0,
        "label": "daily",
        "count": 5,
        "code": "007",
        "dry_run": False,
        "tables": ["a"],
    }  # region is required: it has no default
    region = spec.param_specs["region"]
    assert (region.type, region.required, region.enum) == (
        ParamType.STRING,
        True,
        ("north", "south"),
    )
    assert spec.param_specs["label"].type is ParamType.STRING
    assert spec.param_specs["count"].declared and not spec.param_specs["label"].declared


def test_resolve_fills_defaults_in_declaration_order():
    resolved = resolve_params(spec_with(PARAMS), {"region": "south", "count": 7})
    assert list(resolved) == list(PARAMS)
    assert resolved["count"] == 7 and resolved["region"] == "south" and resolved["code"] == "007"


def test_text_from_the_command_line_becomes_the_declared_type():
    supplied = {
        "min_amount": ParamText("10"),
        "label": ParamText("2026"),
        "count": ParamText("12"),
        "region": ParamText("north"),
        "code": ParamText("012"),
        "dry_run": ParamText("yes"),
        "tables": ParamText("[x, y]"),
    }
    assert resolve_params(spec_with(PARAMS), supplied) == {
        "min_amount": 10,
        "label": "2026",
        "count": 12,
        "region": "north",
        "code": "012",
        "dry_run": True,
        "tables": ["x", "y"],
    }


def test_a_number_default_takes_a_fraction_as_before_types_existed():
    resolved = resolve_params(spec_with({"min_amount": 0}), {"min_amount": ParamText("10.5")})
    assert resolved == {"min_amount": 10.5}


def test_an_untyped_parameter_reads_its_text_as_yaml_as_before():
    resolved = resolve_params(spec_with({"x": None}), {"x": ParamText("[1, 2]")})
    assert resolved == {"x": [1, 2]}


def test_resolving_twice_gives_the_same_values():
    spec = spec_with(PARAMS)
    once = resolve_params(spec, {"region": ParamText("north"), "code": ParamText("123")})
    assert resolve_params(spec, once) == once


@pytest.mark.parametrize(
    ("supplied", "field", "reason"),
    [
        (
            {"region": "north", "nosuch": 1},
            "params.nosuch",
            "unknown parameter 'nosuch' (known: min_amount, label,",
        ),
        ({}, "params.region", "parameter 'region' is required (declared without a default)"),
        ({"region": "north", "count": 0}, "params.count", "0 does not fit: the minimum is 1"),
        ({"region": "north", "count": 51}, "params.count", "51 does not fit: the maximum is 50"),
        (
            {"region": "north", "count": True},
            "params.count",
            "True does not fit: expected type integer",
        ),
        (
            {"region": "north", "count": "5"},
            "params.count",
            "'5' does not fit: expected type integer",
        ),
        (
            {"region": "north", "count": ParamText("five")},
            "params.count",
            "'five' is not a whole number",
        ),
        ({"region": "east"}, "params.region", "allowed values: 'north', 'south'"),
        ({"region": "north", "code": "12"}, "params.code", "must match the pattern '^[0-9]{3}$'"),
        ({"region": "north", "dry_run": ParamText("maybe")}, "params.dry_run", "is not a boolean"),
        (
            {"region": "north", "min_amount": float("nan")},
            "params.min_amount",
            "expected a finite number",
        ),
    ],
)
def test_a_value_that_does_not_fit_is_refused_naming_the_parameter(supplied, field, reason):
    found = errors_of(PARAMS, supplied)
    assert any(f == field and reason in r for f, r in found), found


def test_a_pipeline_without_params_says_it_declares_none():
    assert errors_of({}, {"x": 1}) == [
        ("params.x", "unknown parameter 'x' (this pipeline declares no parameters)")
    ]


@pytest.mark.parametrize(
    ("declaration", "field", "reason"),
    [
        ({"type": "int"}, "params.x.type", "unknown type 'int'"),
        ({"type": "string", "minimum": 1}, "params.x.minimum", "need type integer or number"),
        ({"type": "integer", "pattern": "x"}, "params.x.pattern", "pattern needs type string"),
        ({"type": "string", "pattern": "("}, "params.x.pattern", "not a valid regular expression"),
        ({"enum": []}, "params.x.enum", "non-empty list"),
        ({"type": "integer", "enum": [1, "a"]}, "params.x.enum", "enum value 'a'"),
        ({"type": "integer", "default": None}, "params.x.default", "leave 'default' out"),
        ({"minimum": 5, "maximum": 1, "type": "number"}, "params.x.minimum", "larger than"),
        ({"type": "integer", "mininum": 1}, "params.x.mininum", "unknown field"),
    ],
)
def test_a_declaration_that_cannot_hold_is_refused_when_the_pipeline_is_built(
    declaration, field, reason
):
    with pytest.raises(SpecErrors) as caught:
        spec_with({"x": declaration})
    (error,) = caught.value.errors
    assert error.field == field and reason in error.reason and error.path == "p.yaml"


def test_a_mapping_default_is_declared_as_an_object():
    spec = spec_with({"plain": {"a": 1}, "wrapped": {"type": "object", "default": {"type": 1}}})
    assert spec.params == {"plain": {"a": 1}, "wrapped": {"type": 1}}


def test_validate_previews_required_parameters_with_a_value_of_their_type():
    spec = spec_with(
        {
            "region": {"enum": ["north", "south"]},
            "count": {"type": "integer", "minimum": 3},
            "name": {"type": "string"},
            "flag": {"type": "boolean"},
        }
    )
    assert preview_params(spec) == {"region": "north", "count": 3, "name": "", "flag": False}


def test_declarations_survive_the_copy_stored_with_each_run():
    spec = spec_with(PARAMS)
    again = rebuild(spec_to_document(spec))
    assert again.param_specs == spec.param_specs and again.params == spec.params


def test_airflow_params_carry_the_declared_schema():
    specs = spec_with(PARAMS).param_specs
    assert param_arguments(specs["min_amount"]) == "0"
    assert param_arguments(specs["count"]) == "5, type='integer', minimum=1, maximum=50"
    assert param_arguments(specs["region"]) == (
        "description='sales region', type='string', enum=['north', 'south']"
    )


def test_an_airflow_worker_checks_the_dag_run_conf_with_the_same_function():
    info = PipelineInfo.from_document(
        {"name": "p", "params": {"count": {"type": "integer", "minimum": 1, "default": 5}}}
    )
    assert info.checked_params({"count": 3}) == {"count": 3}
    with pytest.raises(PermanentStepError, match="unknown parameter 'nosuch'"):
        info.checked_params({"count": 3, "nosuch": 1})
    with pytest.raises(PermanentStepError, match="the minimum is 1"):
        info.checked_params({"count": 0})


def test_a_scheduled_pipeline_needs_a_default_for_every_parameter():
    with pytest.raises(SpecErrors) as caught:
        build_pipeline(
            {
                "name": "p",
                "schedule": "@daily",
                "params": {"region": {"enum": ["north", "south"]}, "count": 5},
                "nodes": [{"id": "a", "type": "empty"}],
            }
        )
    assert [(e.field, e.reason) for e in caught.value.errors] == [
        (
            "params.region",
            "a pipeline with a schedule cannot have a required parameter (scheduled runs "
            "supply none): give it a default",
        )
    ]
