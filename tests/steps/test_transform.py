"""transform.sql / transform.filter / transform.dedupe with DuckDB and Arrow."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from batchpilot.errors import PermanentStepError, StepError

from .helpers import make_context, make_step, output_table, run_step

CUSTOMERS = pa.table({"id": [1, 2, 3], "name": ["ann", "bob", "cy"], "active": [True, False, True]})
ORDERS = pa.table(
    {"order_id": [10, 11, 12, 13], "customer_id": [1, 1, 3, 9], "amount": [5, 7, 1, 2]}
)


def test_transform_sql_joins_two_upstream_tables_by_node_id(tmp_path):
    ctx = make_context(tmp_path, {"extract_customers": CUSTOMERS, "extract_orders": ORDERS})

    result = run_step(
        "transform.sql",
        ctx,
        query="SELECT c.name, sum(o.amount) AS total FROM extract_customers c "
        "JOIN extract_orders o ON o.customer_id = c.id GROUP BY c.name ORDER BY c.name",
    )

    assert output_table(result).to_pylist() == [
        {"name": "ann", "total": 12},
        {"name": "cy", "total": 1},
    ]
    assert result.rows_in == 7
    assert result.rows_out == 2


def test_transform_sql_error_names_the_available_tables(tmp_path):
    ctx = make_context(tmp_path, {"extract_customers": CUSTOMERS})

    with pytest.raises(StepError) as failure:
        run_step("transform.sql", ctx, query="SELECT * FROM customers")

    message = str(failure.value)
    assert "customers" in message
    assert "tables: extract_customers" in message
    assert "\n" not in message


def test_transform_sql_large_result_is_streamed_in_batches(tmp_path):
    ctx = make_context(tmp_path, {"up": CUSTOMERS})

    result = run_step("transform.sql", ctx, query="SELECT range AS n FROM range(300000)")

    table = output_table(result)
    assert table.num_rows == 300_000
    assert table.column("n").num_chunks > 1


def test_filter_keeps_matching_rows_in_order(tmp_path):
    ctx = make_context(tmp_path, {"up": ORDERS})

    result = run_step("transform.filter", ctx, condition="amount >= 2 AND customer_id <> 3")

    assert output_table(result).column("order_id").to_pylist() == [10, 11, 13]
    assert (result.rows_in, result.rows_out, result.rows_rejected) == (4, 3, 1)


def test_filter_with_a_bad_condition_says_why(tmp_path):
    ctx = make_context(tmp_path, {"up": ORDERS})

    with pytest.raises(StepError, match="amount_typo"):
        run_step("transform.filter", ctx, condition="amount_typo > 1")


def test_dedupe_keeps_first_by_default_and_input_order(tmp_path):
    table = pa.table({"k": ["b", "a", "b", "c", "a"], "v": [1, 2, 3, 4, 5]})
    ctx = make_context(tmp_path, {"up": table})

    result = run_step("transform.dedupe", ctx, keys=["k"])

    assert output_table(result).to_pylist() == [
        {"k": "b", "v": 1},
        {"k": "a", "v": 2},
        {"k": "c", "v": 4},
    ]
    assert result.rows_rejected == 2


def test_dedupe_keep_last(tmp_path):
    table = pa.table({"k": ["b", "a", "b", "c", "a"], "v": [1, 2, 3, 4, 5]})
    ctx = make_context(tmp_path, {"up": table})

    result = run_step("transform.dedupe", ctx, keys=["k"], keep="last")

    assert output_table(result).to_pylist() == [
        {"k": "b", "v": 3},
        {"k": "c", "v": 4},
        {"k": "a", "v": 5},
    ]


def test_dedupe_on_several_keys_treats_nulls_as_equal(tmp_path):
    table = pa.table(
        {"a": [1, 1, None, None, 1], "b": ["x", "y", "x", "x", "x"], "v": [1, 2, 3, 4, 5]}
    )
    ctx = make_context(tmp_path, {"up": table})

    result = run_step("transform.dedupe", ctx, keys=["a", "b"])

    assert output_table(result).column("v").to_pylist() == [1, 2, 3]


def test_dedupe_unknown_key_is_named(tmp_path):
    ctx = make_context(tmp_path, {"up": ORDERS})

    with pytest.raises(PermanentStepError, match="customer"):
        run_step("transform.dedupe", ctx, keys=["customer"])


def test_dedupe_keep_must_be_first_or_last():
    with pytest.raises(ValidationError, match="keep"):
        make_step("transform.dedupe", keys=["k"], keep="middle")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "COPY (SELECT * FROM up) TO '{tmp}/stolen.csv'",
        "ATTACH '{tmp}/other.db' AS other",
    ],
)
def test_transform_sql_cannot_touch_files_by_default(tmp_path, query):
    ctx = make_context(tmp_path, {"up": CUSTOMERS})

    with pytest.raises(PermanentStepError) as failure:
        run_step("transform.sql", ctx, query=query.format(tmp=tmp_path))

    message = str(failure.value)
    assert "file system operations are disabled" in message
    assert "allowed_directories" in message
    assert not (tmp_path / "stolen.csv").exists()
    assert not (tmp_path / "other.db").exists()


def test_transform_filter_cannot_read_files_by_default(tmp_path):
    ctx = make_context(tmp_path, {"up": CUSTOMERS})

    with pytest.raises(PermanentStepError, match="allowed_directories"):
        run_step(
            "transform.filter",
            ctx,
            condition="name IN (SELECT content FROM read_text('/etc/passwd'))",
        )


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("INSTALL httpfs", "disabled"),
        ("LOAD httpfs", "disabled"),
        ("SET enable_external_access = true", "locked"),
        ("SET lock_configuration = false", "locked"),
        ("SELECT * FROM read_csv('https://example.com/data.csv')", "disabled"),
    ],
)
def test_transform_sql_cannot_load_extensions_or_unlock_its_settings(tmp_path, query, reason):
    ctx = make_context(tmp_path, {"up": CUSTOMERS})

    with pytest.raises(StepError) as failure:
        run_step("transform.sql", ctx, query=query)

    assert "transform.sql query failed" in str(failure.value)
    assert reason in str(failure.value)


def test_allowed_directories_lets_one_node_read_files_there_and_nowhere_else(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "rates.csv").write_text("code,rate\neur,1.1\n")
    ctx = make_context(tmp_path, {"up": CUSTOMERS})

    result = run_step(
        "transform.sql",
        ctx,
        query=f"SELECT code, rate FROM read_csv('{data}/rates.csv') JOIN up ON up.id = 1",
        allowed_directories=[str(data)],
    )
    assert output_table(result).to_pylist() == [{"code": "eur", "rate": 1.1}]

    with pytest.raises(PermanentStepError, match="file system operations are disabled"):
        run_step(
            "transform.sql",
            make_context(tmp_path / "second", {"up": CUSTOMERS}),
            query="SELECT * FROM read_text('/etc/passwd')",
            allowed_directories=[str(data)],
        )


def test_upstream_tables_still_work_with_external_access_off(tmp_path):
    ctx = make_context(tmp_path, {"up": CUSTOMERS})

    result = run_step("transform.filter", ctx, condition="active")

    assert output_table(result).to_pylist() == [
        {"id": 1, "name": "ann", "active": True},
        {"id": 3, "name": "cy", "active": True},
    ]
