"""Steps of the Airflow test pipelines; imported by Airflow workers through PYTHONPATH."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pyarrow as pa


def numbers(params: dict) -> pa.Table:
    """``count`` rows numbered from 1."""
    return pa.table({"n": list(range(1, int(params["count"]) + 1))})


def flaky_double(inputs: dict, params: dict, log) -> pa.Table:
    """Fails on its first attempt of a run (a marker file remembers), doubles ``n`` after."""
    marker = Path(params["state_dir"]) / "flaky_double.tried"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("tried once")
        raise RuntimeError("the warehouse is warming up (first attempt fails on purpose)")
    log.info("second attempt: doubling")
    table = inputs["numbers"]
    return pa.table({"n": [v * 2 for v in table.column("n").to_pylist()]})


def save(inputs: dict, params: dict, run_id: str, log) -> int:
    """Append the single upstream table to ``numbers`` in the SQLite file ``params.db``."""
    table = next(iter(inputs.values()))
    values = table.column("n").to_pylist()
    with sqlite3.connect(params["db"]) as db:
        db.execute("CREATE TABLE IF NOT EXISTS numbers (n INTEGER, run_id TEXT)")
        db.executemany("INSERT INTO numbers VALUES (?, ?)", [(v, run_id) for v in values])
    log.info("saved %d rows for run %s", len(values), run_id)
    return len(values)


def unsave(params: dict, run_id: str) -> int:
    """Compensation of ``save``: delete what this run inserted."""
    with sqlite3.connect(params["db"]) as db:
        deleted = db.execute("DELETE FROM numbers WHERE run_id = ?", (run_id,)).rowcount
        db.execute("CREATE TABLE IF NOT EXISTS undo_log (what TEXT, run_id TEXT)")
        db.execute("INSERT INTO undo_log VALUES ('numbers', ?)", (run_id,))
    return deleted


def publish_fails() -> None:
    """Always fails: the step after the load that makes the run fail."""
    raise RuntimeError("the report server refused the upload")


def slow(params: dict) -> int:
    """Sleeps ``params.sleep_s`` seconds (a task to cancel)."""
    time.sleep(float(params["sleep_s"]))
    return 0


def record_failure(params: dict, run_id: str) -> None:
    """A run-failure callback: note the failure in the target database."""
    with sqlite3.connect(params["db"]) as db:
        db.execute("CREATE TABLE IF NOT EXISTS alerts (run_id TEXT)")
        db.execute("INSERT INTO alerts VALUES (?)", (run_id,))
