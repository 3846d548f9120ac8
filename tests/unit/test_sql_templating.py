"""How templates render in SQL fields, plain fields and paths, and the size bound."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
import yaml
from pydantic import BaseModel

from batchpilot.spec.templating import (
    MAX_RENDERED_CHARS,
    SQL_FOR_DUCKDB,
    SQL_FOR_SQLALCHEMY,
    BindParams,
    TemplateRenderError,
    render_config,
)


class SqlConfig(BaseModel):
    sql: Annotated[str, SQL_FOR_SQLALCHEMY] = ""
    duck: Annotated[str, SQL_FOR_DUCKDB] = ""
    params: Annotated[dict[str, Any], BindParams()] = {}
    path: str = ""


CONTEXT = {
    "params": {
        "x": "z'; DROP TABLE victim; --",
        "n": 5,
        "ratio": 0.25,
        "flag": True,
        "nothing": None,
        "regions": ["north", "south"],
        "empty": [],
        "table": 'odd "name"',
        "slash": "C:\\data",
        "infinite": float("inf"),
    },
    "ds": "2026-11-20",
    "ds_nodash": "20261120",
    "run_id": "run-1",
    "pipeline": "p",
    "task_id": "t",
    "pipeline_dir": "/srv/p",
}


def sql(template: str, field: str = "sql", context: dict[str, Any] | None = None) -> str:
    rendered = render_config({field: template}, context or CONTEXT, config_model=SqlConfig)
    return rendered[field]


def refused(template: str, field: str = "sql") -> str:
    with pytest.raises(TemplateRenderError) as caught:
        sql(template, field)
    assert caught.value.field == field
    return str(caught.value)


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("SELECT {{ params.x }}", "SELECT 'z''; DROP TABLE victim; --'"),
        ("LIMIT {{ params.n }}", "LIMIT 5"),
        ("WHERE r > {{ params.ratio }}", "WHERE r > 0.25"),
        ("WHERE f = {{ params.flag }}", "WHERE f = TRUE"),
        ("WHERE v IS {{ params.nothing }}", "WHERE v IS NULL"),
        ("WHERE r IN {{ params.regions }}", "WHERE r IN ('north', 'south')"),
        ("WHERE r IN {{ params.empty }}", "WHERE r IN (NULL)"),
        ("WHERE d = {{ ds }}::date", "WHERE d = '2026-11-20'::date"),
        ("SELECT * FROM {{ params.table | identifier }}", 'SELECT * FROM "odd ""name"""'),
        ("SELECT {{ 'now()' | unsafe_raw_sql }}", "SELECT now()"),
        ("SELECT 1 -- for {{ ds }}", "SELECT 1 -- for 2026-11-20"),
    ],
)
def test_an_expression_in_sql_code_renders_as_a_literal(template: str, rendered: str):
    assert sql(template) == rendered
    assert sql(template, "duck") == rendered


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        # existing pipelines keep their meaning: no second pair of quotes
        ("WHERE d = '{{ ds }}'", "WHERE d = '2026-11-20'"),
        ("WHERE v = '{{ params.x }}'", "WHERE v = 'z''; DROP TABLE victim; --'"),
        ("WHERE v = 'day {{ ds }} of {{ params.n }}'", "WHERE v = 'day 2026-11-20 of 5'"),
        ('SELECT "{{ params.table }}"', 'SELECT "odd ""name"""'),
    ],
)
def test_an_expression_inside_quotes_renders_escaped_without_new_quotes(
    template: str, rendered: str
):
    assert sql(template) == rendered


def test_an_expression_inside_a_comment_cannot_end_the_comment():
    context = {**CONTEXT, "params": {"x": "a\nDROP TABLE victim; */ DROP TABLE victim; /*"}}
    assert sql("SELECT 1 -- {{ params.x }}\n", context=context) == (
        "SELECT 1 -- a DROP TABLE victim; */ DROP TABLE victim; /*\n"
    )
    assert sql("SELECT 1 /* {{ params.x }} */", context=context) == (
        "SELECT 1 /* a\nDROP TABLE victim; * / DROP TABLE victim; / * */"
    )


def test_inside_a_dollar_quoted_body_a_value_renders_as_a_literal_and_cannot_close_it():
    assert sql("DO $$ BEGIN PERFORM {{ params.x }}; END $$") == (
        "DO $$ BEGIN PERFORM 'z''; DROP TABLE victim; --'; END $$"
    )
    context = {**CONTEXT, "params": {"x": "$$; DROP TABLE victim; $$"}}
    with pytest.raises(TemplateRenderError, match=r"would end the dollar-quoted text"):
        sql("DO $$ BEGIN PERFORM {{ params.x }}; END $$", context=context)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("SELECT * FROM sales_{{ ds_nodash }}", "touches a word"),
        ("SELECT {{ ds }}{{ ds }}", "touches a word"),
        ("SELECT E'{{ ds }}'", "escape string"),
        ("SELECT {{ params.slash }}", "backslash"),
        ("SELECT '{{ params.slash }}'", "backslash"),
        ("SELECT {{ params }}", "mapping has no SQL literal"),
        ("SELECT {{ params.infinite }}", "no SQL literal"),
        ("SELECT {{ [[1]] }}", "nested list"),
    ],
)
def test_values_that_cannot_be_written_safely_are_refused_naming_the_fix(
    template: str, reason: str
):
    assert reason in refused(template)


def test_duckdb_fields_keep_backslashes_as_plain_characters():
    assert sql("SELECT {{ params.slash }}", "duck") == "SELECT 'C:\\data'"


def test_a_colon_word_inside_a_value_stays_text_for_sqlalchemy():
    context = {**CONTEXT, "params": {"x": ":ds and :run_id"}}
    assert sql("SELECT {{ params.x }}, :ds", context=context) == (
        "SELECT '\\:ds and \\:run_id', :ds"
    )
    assert sql("SELECT {{ params.x }}", "duck", context=context) == "SELECT ':ds and :run_id'"


def test_bind_params_include_the_run_values_and_every_param_under_the_steps_own():
    rendered = render_config(
        {"sql": "SELECT :ds", "params": {"n": 99}}, CONTEXT, config_model=SqlConfig
    )
    assert rendered["params"]["ds"] == "2026-11-20"
    assert rendered["params"]["run_id"] == "run-1"
    assert rendered["params"]["x"] == "z'; DROP TABLE victim; --"
    assert rendered["params"]["n"] == 99


def test_plain_fields_render_as_text_and_sql_without_templates_is_untouched():
    rendered = render_config(
        {"path": "{{ pipeline_dir }}/{{ params.x }}.csv", "sql": "SELECT ':x', '{x}' -- {"},
        CONTEXT,
        config_model=SqlConfig,
    )
    assert rendered["path"] == "/srv/p/z'; DROP TABLE victim; --.csv"
    assert rendered["sql"] == "SELECT ':x', '{x}' -- {"


def test_without_a_config_model_every_string_renders_as_plain_text():
    assert render_config({"sql": "x = '{{ params.x }}'"}, CONTEXT) == {
        "sql": "x = 'z'; DROP TABLE victim; --'"
    }


def _alias_tree(levels: int) -> Any:
    document = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
    for level in range(1, levels + 1):
        document += f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]\n"
    return yaml.safe_load(document)[f"a{levels}"]


@pytest.mark.parametrize("field", ["sql", "path"])
def test_a_value_expanding_past_the_limit_is_refused_naming_the_field_and_limit(field: str):
    context = {**CONTEXT, "params": {"bomb": _alias_tree(9)}}  # 9**10 leaves
    with pytest.raises(TemplateRenderError) as caught:
        render_config({field: "{{ params.bomb }}"}, context, config_model=SqlConfig)
    assert caught.value.field == field
    assert f"{MAX_RENDERED_CHARS:,} characters" in str(caught.value)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 10000000 }}",
        "{{ 10 ** 100000000 }}",
        "{{ params.bomb | join(',') }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}xx{% endfor %}{% endfor %}",
    ],
)
def test_templates_that_grow_past_the_limit_are_refused(template: str):
    context = {**CONTEXT, "params": {"bomb": _alias_tree(9)}}
    with pytest.raises(TemplateRenderError, match="the limit for one rendered config value"):
        render_config({"path": template}, context, config_model=SqlConfig)


def test_a_value_just_under_the_limit_renders():
    template = "{{ 'a' * " + str(MAX_RENDERED_CHARS - 10) + " }}"
    assert len(render_config({"path": template}, CONTEXT)["path"]) == MAX_RENDERED_CHARS - 10


def test_filters_work_and_a_large_param_the_template_does_not_use_does_not_count():
    context = {**CONTEXT, "params": {"big": "x" * (MAX_RENDERED_CHARS - 1), "more": "y" * 900}}
    rendered = render_config(
        {
            "path": "{{ params.missing | default('d') }}/{{ ds | replace('-', '') }}",
            "sql": "SELECT {{ params.more | length }}, {{ params.missing | default('none') }}",
        },
        context,
        config_model=SqlConfig,
    )
    assert rendered["path"] == "d/20261120"
    assert rendered["sql"] == "SELECT 900, 'none'"


@pytest.mark.parametrize("field", ["sql", "duck"])
def test_an_undefined_name_in_sql_is_refused_naming_the_field(field: str):
    # found by the validate fuzz test: a pipeline without the params its SQL uses
    assert "has no attribute 'missing'" in refused("WHERE a > {{ params.missing }}", field)
    assert "'nowhere' is undefined" in refused("SELECT {{ nowhere }}", field)
