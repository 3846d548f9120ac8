"""The examples a new user runs first work end to end, with nothing configured."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.cli_runner import Cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def example(tmp_path: Path):
    """Copy an example folder so its outputs land in the test's own folder."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("out"))
        return target

    return copy


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_every_example_validates(cli: Cli):
    result = cli("validate", str(EXAMPLES))
    assert result.code == 0, result.stdout + result.stderr
    assert "0 invalid" in result.stdout


def test_users_etl_upserts_valid_unique_users_and_reports_the_valid_share(cli: Cli, example):
    folder = example("users_etl")
    first = cli("run", str(folder / "users_etl.yaml"), "-o", "json")
    assert first.code == 0, first.stderr
    tasks = first.json()["tasks"]
    assert tasks["extract_users"]["rows_out"] == 40
    assert tasks["validate_users"]["rows_rejected"] == 9
    assert tasks["dedupe_by_email"]["rows_rejected"] == 1
    db = folder / "out" / "warehouse.db"
    assert rows(db, "SELECT count(*), count(DISTINCT email) FROM users") == [(30, 30)]
    logs = cli("logs", first.json()["run_id"], "--task", "report")
    assert "valid share: 77.5% (31 of 40 rows)" in logs.stdout

    again = cli("run", str(folder / "users_etl.yaml"), "-o", "json")  # upsert: no duplicates
    assert again.code == 0
    assert rows(db, "SELECT count(*) FROM users") == [(30,)]


def test_users_etl_fails_when_the_valid_share_is_below_the_threshold(cli: Cli, example):
    folder = example("users_etl")
    result = cli(
        "run", str(folder / "users_etl.yaml"), "--param", "min_valid_ratio=0.9", "-o", "json"
    )
    assert result.code == 1
    validate = result.json()["tasks"]["validate_users"]
    assert validate["state"] == "failed" and validate["attempts"] == 1  # bad data: no retry
    assert "0.775" in validate["error"] or "77.5" in validate["error"]


def test_daily_etl_joins_three_extracts_and_loads_three_targets(cli: Cli, example):
    folder = example("daily_etl")
    result = cli("run", str(folder / "daily_etl.yaml"), "--date", "2026-11-20", "-o", "json")
    assert result.code == 0, result.stderr
    assert result.json()["tasks"]["daily_sales"]["rows_out"] == 500
    assert rows(folder / "out" / "warehouse.db", "SELECT count(*) FROM daily_sales") == [(500,)]
    assert (folder / "out" / "sales" / "2026-11-20.parquet").exists()
    csv_lines = (folder / "out" / "sales" / "2026-11-20-orders.csv").read_text().splitlines()
    assert len(csv_lines) == 501


def test_order_saga_compensates_and_leaves_the_database_as_before(cli: Cli, example):
    folder = example("order_saga")
    db = folder / "out" / "shop.db"
    first = cli("run", str(folder / "order_saga.yaml"), "-o", "json")
    assert first.code == 1
    before = {t: rows(db, f"SELECT * FROM {t} ORDER BY 1") for t in ("accounts", "stock", "orders")}
    assert before == {"accounts": [(1, "ada", 100)], "stock": [("SKU-1", 10)], "orders": []}

    second = cli("run", str(folder / "order_saga.yaml"), "-o", "json")
    data = second.json()
    assert second.code == 1 and data["status"] == "failed"
    states = {t: v["state"] for t, v in data["tasks"].items()}
    assert states == {
        "prepare": "success",
        "create_order": "compensated",
        "reserve_stock": "compensated",
        "debit_account": "failed",
    }
    assert "CHECK constraint failed" in data["tasks"]["debit_account"]["error"]
    after = {t: rows(db, f"SELECT * FROM {t} ORDER BY 1") for t in ("accounts", "stock", "orders")}
    assert after == before
