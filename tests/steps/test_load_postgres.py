"""load.postgres: COPY into a real PostgreSQL, in one transaction, exactly once."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from pydantic import ValidationError

from batchpilot.errors import PermanentStepError, StepError

from .helpers import make_context, make_step, run_step

pytestmark = pytest.mark.postgres


def rows(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def load(tmp_path: Path, pg_url: str, data: pa.Table, run_id: str = "run-1", **config):
    ctx = make_context(tmp_path, {"up": data}, {"dwh": pg_url}, run_id=run_id, task_id="load")
    return run_step("load.postgres", ctx, connection="dwh", **config)


PEOPLE = pa.table({"id": [1, 2, 3], "name": ["ann", "bob", "cy"]})


def test_append_creates_the_table_and_records_the_load(tmp_path, pg_url, pg_dsn):
    result = load(tmp_path, pg_url, PEOPLE, table="people", mode="append")

    assert rows(pg_dsn, "SELECT id, name FROM people ORDER BY id") == [
        (1, "ann"),
        (2, "bob"),
        (3, "cy"),
    ]
    assert result.rows_out == 3
    assert result.metadata["already_loaded"] is False
    assert result.metadata["mode"] == "append"
    assert rows(pg_dsn, "SELECT pipeline, run_id, task_id, rows FROM batchpilot_loads") == [
        ("test_pipeline", "run-1", "load", 3)
    ]


def test_append_load_twice_in_same_run_loads_once(tmp_path, pg_url, pg_dsn):
    load(tmp_path, pg_url, PEOPLE, table="people", mode="append")
    again = load(tmp_path, pg_url, PEOPLE, table="people", mode="append")

    assert rows(pg_dsn, "SELECT count(*) FROM people") == [(3,)]
    assert again.metadata["already_loaded"] is True
    assert again.rows_out == 3


def test_append_in_another_run_loads_again(tmp_path, pg_url, pg_dsn):
    load(tmp_path, pg_url, PEOPLE, table="people", mode="append", run_id="run-1")
    load(tmp_path, pg_url, PEOPLE, table="people", mode="append", run_id="run-2")

    assert rows(pg_dsn, "SELECT count(*) FROM people") == [(6,)]


def test_null_and_empty_string_round_trip_exactly(tmp_path, pg_url, pg_dsn):
    table = pa.table(
        {
            "id": [1, 2, 3, 4, 5],
            "note": ["", None, "x", 'say "hi", ok', "two\nlines"],
            "n": [None, 1, 2, 3, 4],
        }
    )
    load(tmp_path, pg_url, table, table="notes")

    assert rows(pg_dsn, "SELECT id, note, note IS NULL, n FROM notes ORDER BY id") == [
        (1, "", False, None),
        (2, None, True, 1),
        (3, "x", False, 2),
        (4, 'say "hi", ok', False, 3),
        (5, "two\nlines", False, 4),
    ]


def test_types_map_to_postgres_columns(tmp_path, pg_url, pg_dsn):
    stamp = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    table = pa.table(
        {
            "flag": [True],
            "small": pa.array([7], pa.int16()),
            "big": pa.array([2**40], pa.int64()),
            "ratio": [0.25],
            "price": pa.array([decimal.Decimal("12.34")], pa.decimal128(10, 2)),
            "day": pa.array([dt.date(2024, 5, 6)], pa.date32()),
            "at": pa.array([stamp], pa.timestamp("us")),
            "at_utc": pa.array([stamp], pa.timestamp("us", tz="UTC")),
            "blob": pa.array([b"\x00\xff"], pa.binary()),
            "tags": pa.array([["a", "b"]], pa.list_(pa.string())),
        }
    )
    load(tmp_path, pg_url, table, table="typed")

    got = rows(pg_dsn, "SELECT * FROM typed")[0]
    assert got[:8] == (
        True,
        7,
        2**40,
        0.25,
        decimal.Decimal("12.34"),
        dt.date(2024, 5, 6),
        stamp,
        stamp.replace(tzinfo=dt.UTC),
    )
    assert bytes(got[8]) == b"\x00\xff"
    assert got[9] == ["a", "b"]
    types = dict(
        rows(
            pg_dsn,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'typed'",
        )
    )
    assert types["price"] == "numeric"
    assert types["at_utc"] == "timestamp with time zone"
    assert types["tags"] == "jsonb"


def test_replace_empties_the_table_first(tmp_path, pg_url, pg_dsn):
    load(tmp_path, pg_url, PEOPLE, table="people", run_id="run-1")
    load(
        tmp_path,
        pg_url,
        pa.table({"id": [9], "name": ["zed"]}),
        table="people",
        mode="replace",
        run_id="run-2",
    )

    assert rows(pg_dsn, "SELECT id, name FROM people") == [(9, "zed")]


def test_upsert_updates_changed_rows_and_inserts_new_ones(tmp_path, pg_url, pg_dsn):
    load(tmp_path, pg_url, PEOPLE, table="people", mode="upsert", key=["id"], run_id="run-1")
    changes = pa.table({"id": [2, 3, 4], "name": ["bobby", "cy", "dee"]})
    result = load(
        tmp_path, pg_url, changes, table="people", mode="upsert", key=["id"], run_id="run-2"
    )

    assert rows(pg_dsn, "SELECT id, name FROM people ORDER BY id") == [
        (1, "ann"),
        (2, "bobby"),
        (3, "cy"),
        (4, "dee"),
    ]
    # id 3 was identical: only the update of 2 and the insert of 4 touched rows
    assert result.metadata["changed"] == 2
    assert result.metadata["key"] == ["id"]
    assert rows(
        pg_dsn,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = 'people'::regclass AND i.indisprimary",
    ) == [("id",)]


def test_reupserting_identical_rows_does_not_rewrite_them(tmp_path, pg_url, pg_dsn):
    load(tmp_path, pg_url, PEOPLE, table="people", mode="upsert", key=["id"], run_id="run-1")
    before = rows(pg_dsn, "SELECT id, xmin::text FROM people ORDER BY id")
    result = load(
        tmp_path, pg_url, PEOPLE, table="people", mode="upsert", key=["id"], run_id="run-2"
    )

    assert result.metadata["changed"] == 0
    assert rows(pg_dsn, "SELECT id, xmin::text FROM people ORDER BY id") == before


def test_failed_upsert_leaves_target_unchanged(tmp_path, pg_url, pg_dsn):
    load(tmp_path, pg_url, PEOPLE, table="people", mode="upsert", key=["id"], run_id="run-1")
    # the same key twice in one input cannot be merged: the whole load must roll back
    bad = pa.table({"id": [1, 5, 5], "name": ["changed", "new", "new again"]})

    with pytest.raises(PermanentStepError, match="more than once"):
        load(tmp_path, pg_url, bad, table="people", mode="upsert", key=["id"], run_id="run-2")

    assert rows(pg_dsn, "SELECT id, name FROM people ORDER BY id") == [
        (1, "ann"),
        (2, "bob"),
        (3, "cy"),
    ]
    assert rows(pg_dsn, "SELECT run_id FROM batchpilot_loads") == [("run-1",)]


def test_failed_replace_leaves_target_unchanged(tmp_path, pg_url, pg_dsn):
    load(tmp_path, pg_url, PEOPLE, table="people", mode="upsert", key=["id"], run_id="run-1")
    no_id = pa.table({"id": pa.array([None], pa.int64()), "name": ["nobody"]})

    with pytest.raises(PermanentStepError, match="people") as failure:
        load(tmp_path, pg_url, no_id, table="people", mode="replace", run_id="run-2")

    assert "\n" not in str(failure.value)
    assert rows(pg_dsn, "SELECT count(*) FROM people") == [(3,)]


def test_a_failed_load_is_not_recorded_so_a_retry_loads(tmp_path, pg_url, pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE nums (n integer CHECK (n < 100))")
    ctx = make_context(tmp_path, {"up": pa.table({"n": [1, 500]})}, {"dwh": pg_url})
    with pytest.raises(PermanentStepError, match="nums"):
        run_step("load.postgres", ctx, connection="dwh", table="nums")

    ctx = make_context(tmp_path, {"up": pa.table({"n": [1, 50]})}, {"dwh": pg_url})
    result = run_step("load.postgres", ctx, connection="dwh", table="nums")

    assert result.metadata["already_loaded"] is False
    assert rows(pg_dsn, "SELECT n FROM nums ORDER BY n") == [(1,), (50,)]


def test_bad_value_names_the_column(tmp_path, pg_url, pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE t (id integer, day date)")
    table = pa.table({"id": [1], "day": ["not a date"]})

    with pytest.raises(PermanentStepError, match="column day"):
        load(tmp_path, pg_url, table, table="t")


def test_schema_qualified_table_is_created_in_its_schema(tmp_path, pg_url, pg_dsn):
    load(tmp_path, pg_url, PEOPLE, table="staging.people", mode="upsert", key=["id"])

    assert rows(pg_dsn, "SELECT count(*) FROM staging.people") == [(3,)]
    assert rows(pg_dsn, "SELECT to_regclass('public.people')") == [(None,)]


def test_columns_are_matched_by_name_not_position(tmp_path, pg_url, pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE people (name text, extra text DEFAULT 'd', id bigint)")
    load(tmp_path, pg_url, PEOPLE, table="people")

    assert rows(pg_dsn, "SELECT id, name, extra FROM people ORDER BY id")[0] == (1, "ann", "d")


def test_input_column_missing_from_table_is_named(tmp_path, pg_url, pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE people (id bigint)")

    with pytest.raises(PermanentStepError, match="input column 'name' is not in table people"):
        load(tmp_path, pg_url, PEOPLE, table="people")


def test_missing_table_without_create_fails(tmp_path, pg_url):
    with pytest.raises(PermanentStepError, match="does not exist and create is false"):
        load(tmp_path, pg_url, PEOPLE, table="people", create=False)


def test_upsert_requires_a_key_in_the_config():
    with pytest.raises(ValidationError, match="needs 'key'"):
        make_step("load.postgres", connection="dwh", table="t", mode="upsert")


def test_mixed_case_and_odd_names_are_quoted(tmp_path, pg_url, pg_dsn):
    table = pa.table({"Id": [1], "first name": ["ann"], "select": ["kw"]})
    load(tmp_path, pg_url, table, table="My Table", mode="upsert", key=["Id"])

    assert rows(pg_dsn, 'SELECT "Id", "first name", "select" FROM "My Table"') == [(1, "ann", "kw")]


def test_many_batches_are_all_loaded(tmp_path, pg_url, pg_dsn):
    n = 50_000
    table = pa.table({"id": pa.array(range(n), pa.int64()), "v": [str(i) for i in range(n)]})
    table = pa.Table.from_batches(table.to_batches(max_chunksize=7_000))
    result = load(tmp_path, pg_url, table, table="big")

    assert result.rows_out == n
    assert rows(pg_dsn, "SELECT count(*), sum(id), count(DISTINCT v) FROM big") == [
        (n, n * (n - 1) // 2, n)
    ]


def test_cancel_rolls_back(tmp_path, pg_url, pg_dsn):
    ctx = make_context(tmp_path, {"up": PEOPLE}, {"dwh": pg_url})
    ctx.cancel_event.set()

    with pytest.raises(StepError, match="cancelled"):
        run_step("load.postgres", ctx, connection="dwh", table="people")

    assert rows(pg_dsn, "SELECT to_regclass('people')") == [(None,)]


def test_unreachable_server_is_a_one_line_error_without_password(tmp_path):
    url = "postgresql://loader:s3cret@127.0.0.1:1/nowhere"
    ctx = make_context(tmp_path, {"up": PEOPLE}, {"dwh": url})

    with pytest.raises(StepError) as failure:
        run_step("load.postgres", ctx, connection="dwh", table="people")

    message = str(failure.value)
    assert "s3cret" not in message
    assert "cannot connect to 'dwh'" in message
    assert "\n" not in message


def _typed_columns() -> pa.Table:
    """Every type the binary COPY path takes, with NULLs and awkward values."""
    stamp = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    return pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "small": pa.array([-32768, None, 32767], pa.int64()),
            "medium": pa.array([2**31 - 1, 0, None], pa.int64()),
            "single": pa.array([0.1, None, -1e30], pa.float64()),
            "double": pa.array([0.1, float("inf"), None], pa.float64()),
            "whole": pa.array([2**53 + 1, None, -7], pa.int64()),
            "flag": pa.array([True, None, False]),
            "note": pa.array(["", None, 'quote " comma , tab \t new\nline é ✓']),
            "city": pa.array(["Oslo", None, "Oslo"]).dictionary_encode(),
            "label": pa.array(["a", "bb", None]),
            "day": pa.array([dt.date(1999, 12, 31), None, dt.date(2038, 1, 19)], pa.date32()),
            "at": pa.array([stamp, None, dt.datetime(1970, 1, 1)], pa.timestamp("s")),
            "at_ns": pa.array(
                [1_715_000_000_123_456_700, None, -1_000_000_000_000_000_001], pa.timestamp("ns")
            ),
            "at_zone": pa.array(
                [stamp, None, dt.datetime(2000, 1, 1)], pa.timestamp("us", tz="Europe/Paris")
            ),
            "blob": pa.array([b"\x00\xff", None, b""], pa.binary()),
        }
    )


_TYPED_DDL = (
    "id bigint PRIMARY KEY, small smallint, medium integer, single real, double double "
    "precision, whole double precision, flag boolean, note text, city text, label varchar(2), "
    "day date, at timestamp, at_ns timestamp, at_zone timestamptz, blob bytea"
)


def test_binary_copy_loads_the_same_values_as_csv_copy(tmp_path, pg_url, pg_dsn):
    data = _typed_columns()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(f"CREATE TABLE fast ({_TYPED_DDL}, extra bigint)")
        # a numeric column has no binary pairing: the whole load takes the CSV path
        conn.execute(f"CREATE TABLE slow ({_TYPED_DDL}, extra numeric)")
    data = data.append_column("extra", pa.array([1, 2, 3]))

    fast = load(tmp_path / "fast", pg_url, data, table="fast", run_id="fast")
    slow = load(tmp_path / "slow", pg_url, data, table="slow", run_id="slow")

    assert fast.metadata["copy_format"] == "binary" and fast.rows_out == 3
    assert slow.metadata["copy_format"] == "csv" and slow.rows_out == 3
    columns = ", ".join(data.column_names[:-1])
    loaded_fast = rows(pg_dsn, f"SELECT {columns} FROM fast ORDER BY id")
    assert loaded_fast == rows(pg_dsn, f"SELECT {columns} FROM slow ORDER BY id")
    first = dict(zip(data.column_names, loaded_fast[0], strict=False))
    assert first["at_ns"] == dt.datetime(2024, 5, 6, 12, 53, 20, 123457)
    assert first["at_zone"] == dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)  # UTC
    assert first["whole"] == float(2**53)
    assert bytes(first["blob"]) == b"\x00\xff"


def test_a_value_too_big_for_its_column_names_it_and_loads_nothing(tmp_path, pg_url, pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE stock (id bigint PRIMARY KEY, qty smallint)")
        conn.execute("INSERT INTO stock VALUES (1, 5)")
    data = pa.table({"id": [2, 3], "qty": [10, 70_000]})

    with pytest.raises(
        PermanentStepError,
        match=r"nothing was loaded: column qty: a value does not fit smallint: .*70000",
    ):
        load(tmp_path, pg_url, data, table="stock")

    assert rows(pg_dsn, "SELECT id, qty FROM stock") == [(1, 5)]
    assert rows(pg_dsn, "SELECT count(*) FROM batchpilot_loads") == [(0,)]


def test_a_value_too_long_for_a_varchar_fails_on_the_server(tmp_path, pg_url, pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE codes (code varchar(2))")
    data = pa.table({"code": ["ab", "abc"]})

    with pytest.raises(PermanentStepError, match="too long for type character varying"):
        load(tmp_path, pg_url, data, table="codes")

    assert rows(pg_dsn, "SELECT count(*) FROM codes") == [(0,)]
