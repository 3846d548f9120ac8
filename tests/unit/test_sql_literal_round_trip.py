"""Property: any text a template writes into SQL comes back from the database exactly,
and the statement stays one statement (real SQLite through SQLAlchemy, real DuckDB)."""

from __future__ import annotations

from typing import Annotated

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import create_engine, text

from batchpilot.spec.templating import SQL_FOR_DUCKDB, SQL_FOR_SQLALCHEMY, render_config

#: characters that matter to SQL lexers and drivers, mixed with any other text
SQL_SYNTAX = st.sampled_from(
    [*"'\"`;:-/*$%()\n\r\t ?@#\u2019\uff07\u02bc", "--", "/*", "*/", "$$", "%(x)s", ":x"]
)
VALUES = st.lists(st.one_of(SQL_SYNTAX, st.text(max_size=5)), max_size=12).map("".join)

TEMPLATE = "SELECT {{ params.v }} AS code, '{{ params.v }}' AS quoted, '<{{ params.v }}>' AS framed"


class Config(BaseModel):
    sql: Annotated[str, SQL_FOR_SQLALCHEMY] = ""
    duck: Annotated[str, SQL_FOR_DUCKDB] = ""


def rendered(field: str, value: str) -> str:
    context = {"params": {"v": value}, "ds": "2026-11-20"}
    return render_config({field: TEMPLATE}, context, config_model=Config)[field]


ENGINE = create_engine("sqlite://")
DUCKDB = duckdb.connect(":memory:")


@settings(max_examples=200, deadline=None)
@given(VALUES.filter(lambda v: "\x00" not in v and "\\" not in v and "%(" not in v))
def test_text_round_trips_through_sqlalchemy_on_sqlite(value: str):
    with ENGINE.connect() as conn:
        row = conn.execute(text(rendered("sql", value))).one()
    assert tuple(row) == (value, value, f"<{value}>")


@settings(max_examples=200, deadline=None)
@given(VALUES.filter(lambda v: "\x00" not in v))
def test_text_round_trips_through_duckdb_backslashes_included(value: str):
    rows = DUCKDB.sql(rendered("duck", value)).fetchall()
    assert rows == [(value, value, f"<{value}>")]
