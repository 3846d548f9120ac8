"""extract.csv / extract.excel / extract.parquet / extract.sql on real files and databases."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xlsxwriter
from pydantic import ValidationError

from batchpilot.errors import StepError
from batchpilot.steps.extract import CSV_BLOCK_BYTES

from .helpers import make_context, make_step, output_table, run_step


def test_csv_is_read_with_inferred_types(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("id,name,score,day\n1,ann,1.5,2024-01-02\n2,bob,2.5,2024-01-03\n")

    result = run_step("extract.csv", make_context(tmp_path), path=str(path))

    table = output_table(result)
    assert table.to_pylist()[0] == {
        "id": 1,
        "name": "ann",
        "score": 1.5,
        "day": dt.date(2024, 1, 2),
    }
    assert table.schema.field("id").type == pa.int64()
    assert result.rows_out == 2


def test_csv_unquoted_empty_is_null_and_quoted_empty_is_empty_string(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text('id,note\n1,\n2,""\n3,x\n')

    table = output_table(run_step("extract.csv", make_context(tmp_path), path=str(path)))

    assert table.column("note").to_pylist() == [None, "", "x"]


def test_csv_options_delimiter_encoding_header_and_types(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("1;café;007\n2;naïve;010\n".encode("latin1"))

    result = run_step(
        "extract.csv",
        make_context(tmp_path),
        path=str(path),
        delimiter=";",
        encoding="latin1",
        header=False,
        columns=["id", "word", "code"],
        column_types={"code": "string"},
    )

    assert output_table(result).to_pylist() == [
        {"id": 1, "word": "café", "code": "007"},
        {"id": 2, "word": "naïve", "code": "010"},
    ]


def test_csv_null_values_are_configurable(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("id,v\n1,NA\n2,\n3,5\n")

    table = output_table(
        run_step("extract.csv", make_context(tmp_path), path=str(path), null_values=["NA"])
    )

    assert table.column("v").to_pylist() == [None, "", "5"]


def test_csv_streams_in_several_batches(tmp_path):
    path = tmp_path / "big.csv"
    rows = 2 * CSV_BLOCK_BYTES // 11 + 1000
    path.write_text("n\n" + "1234567890\n" * rows)

    result = run_step("extract.csv", make_context(tmp_path), path=str(path))

    table = output_table(result)
    assert table.num_rows == rows
    assert table.column("n").num_chunks > 1


def test_missing_csv_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "customers.csv"

    with pytest.raises(StepError, match=r"customers\.csv") as failure:
        run_step("extract.csv", make_context(tmp_path), path=str(missing))

    assert str(missing) in str(failure.value)


def test_malformed_csv_row_fails_with_one_line_reason(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")

    with pytest.raises(StepError) as failure:
        run_step("extract.csv", make_context(tmp_path), path=str(path))

    message = str(failure.value)
    assert "\n" not in message
    assert str(path) in message
    assert "Expected 2 columns, got 3" in message
    assert "3,4,5" in message


def test_csv_type_change_after_first_block_suggests_column_types(tmp_path):
    path = tmp_path / "drift.csv"
    path.write_text("n\n" + "1234567890\n" * (CSV_BLOCK_BYTES // 11 + 1000) + "oops\n")

    with pytest.raises(StepError, match="column_types"):
        run_step("extract.csv", make_context(tmp_path), path=str(path))


def test_csv_unknown_column_type_is_a_config_error():
    with pytest.raises(ValidationError, match="unknown column type 'whole number'"):
        make_step("extract.csv", path="x.csv", column_types={"n": "whole number"})


def _workbook(path, sheets):
    book = xlsxwriter.Workbook(str(path))
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                sheet.write(r, c, value)
    book.close()


def test_excel_reads_the_first_sheet_by_default_and_others_by_name_or_index(tmp_path):
    path = tmp_path / "book.xlsx"
    _workbook(
        path,
        {
            "people": [["id", "name"], [1, "ann"], [2, "bob"]],
            "cities": [["city"], ["Paris"]],
        },
    )
    ctx = make_context(tmp_path)

    first = output_table(run_step("extract.excel", ctx, path=str(path)))
    by_name = output_table(run_step("extract.excel", ctx, path=str(path), sheet="cities"))
    by_index = run_step("extract.excel", ctx, path=str(path), sheet=1)

    assert first.to_pylist() == [{"id": 1.0, "name": "ann"}, {"id": 2.0, "name": "bob"}]
    assert by_name.to_pylist() == [{"city": "Paris"}]
    assert by_index.metadata["sheet"] == "cities"


def test_excel_missing_sheet_lists_the_sheets(tmp_path):
    path = tmp_path / "book.xlsx"
    _workbook(path, {"people": [["id"], [1]]})

    with pytest.raises(StepError, match="no sheet 'orders'; it has: people"):
        run_step("extract.excel", make_context(tmp_path), path=str(path), sheet="orders")


def test_missing_excel_names_the_path(tmp_path):
    with pytest.raises(StepError, match=r"book\.xlsx"):
        run_step("extract.excel", make_context(tmp_path), path=str(tmp_path / "book.xlsx"))


def test_parquet_is_streamed_into_the_output(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"id": list(range(1000)), "v": [str(i) for i in range(1000)]})
    pq.write_table(table, path, row_group_size=100)

    result = run_step("extract.parquet", make_context(tmp_path), path=str(path))

    assert output_table(result).equals(table)
    assert result.rows_out == 1000


def test_parquet_column_selection_and_missing_file(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1], "b": [2]}), path)
    ctx = make_context(tmp_path)

    only_b = output_table(run_step("extract.parquet", ctx, path=str(path), columns=["b"]))
    assert only_b.column_names == ["b"]
    with pytest.raises(StepError, match=r"other\.parquet"):
        run_step("extract.parquet", ctx, path=str(tmp_path / "other.parquet"))


def test_sql_extract_from_sqlite_with_bind_params(tmp_path):
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, name TEXT, score REAL)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)", [(i, f"n{i}", i / 2) for i in range(25_000)]
        )
    ctx = make_context(tmp_path, connections={"src": f"sqlite:///{db}"})

    result = run_step(
        "extract.sql",
        ctx,
        connection="src",
        query="SELECT id, name, score FROM t WHERE id >= :low ORDER BY id",
        params={"low": 5},
    )

    table = output_table(result)
    assert table.num_rows == 24_995
    assert table.column("id").num_chunks > 1  # streamed in batches
    assert table.slice(0, 1).to_pylist() == [{"id": 5, "name": "n5", "score": 2.5}]


@pytest.mark.postgres
def test_sql_extract_from_postgres_keeps_types(tmp_path, pg_url, pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "CREATE TABLE t (id int, price numeric(8,2), at timestamptz, doc jsonb, note text)"
        )
        conn.execute(
            "INSERT INTO t VALUES (1, 9.99, '2024-01-01T00:00:00Z', '{\"a\": 1}', NULL), "
            "(2, NULL, NULL, NULL, '')"
        )
    ctx = make_context(tmp_path, connections={"dwh": pg_url})

    result = run_step("extract.sql", ctx, connection="dwh", query="SELECT * FROM t ORDER BY id")

    table = output_table(result)
    assert table.schema.field("id").type == pa.int32()
    assert table.schema.field("price").type == pa.decimal128(8, 2)
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.to_pylist()[0]["price"] == decimal.Decimal("9.99")
    assert table.column("doc").to_pylist() == ['{"a": 1}', None]
    assert table.column("note").to_pylist() == [None, ""]


def test_sql_extract_error_carries_the_database_message(tmp_path):
    ctx = make_context(tmp_path, connections={"src": f"sqlite:///{tmp_path / 'x.db'}"})

    with pytest.raises(StepError, match="no such table: missing"):
        run_step("extract.sql", ctx, connection="src", query="SELECT * FROM missing")
