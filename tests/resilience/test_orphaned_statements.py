"""A run process killed with SIGKILL mid-statement leaves that statement running on the
PostgreSQL server; ``cancel``, ``runs reap`` and ``resume`` end it there, and touch no
other session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.cli_runner import Cli

PIPELINE = """
name: orphan
nodes:
  - id: slow_sql
    type: sql
    config: {connection: dwh, sql: "SELECT pg_sleep(60)"}
"""


def sleeping_sessions(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' "
            "AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchone()[0]


def wait_until(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


@pytest.fixture
def killed_run(cli: Cli, tmp_path: Path, pg_url: str, pg_dsn: str) -> str:
    """A run whose process was SIGKILLed while its statement ran on the server."""
    (tmp_path / "orphan.yaml").write_text(PIPELINE)
    cli.env["BATCHPILOT_CONN_DWH"] = pg_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchpilot", "run", "orphan.yaml", "-q"],
        cwd=tmp_path,
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: sleeping_sessions(pg_dsn) == 1, "pg_sleep runs on the server")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    time.sleep(0.5)
    assert sleeping_sessions(pg_dsn) == 1, "the orphaned statement goes on without its client"
    return cli("runs", "list", "-o", "json").json()[0]["run_id"]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize(
    "command",
    [("cancel", "{run}"), ("runs", "reap"), ("resume", "{run}")],
    ids=["cancel", "reap", "resume"],
)
def test_acting_on_a_dead_run_ends_its_statement_on_the_server(
    cli: Cli, killed_run: str, pg_dsn: str, command: tuple[str, ...]
):
    with psycopg.connect(pg_dsn, autocommit=True) as bystander:
        bystander_pid = bystander.info.backend_pid
        args = [part.format(run=killed_run) for part in command]
        if args[0] == "resume":
            # resume starts the task again: its new pg_sleep must be the only one
            proc = subprocess.Popen(
                [sys.executable, "-m", "batchpilot", *args, "-q"],
                cwd=cli.cwd,
                env=cli.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                wait_until(
                    lambda: _task_attempts(cli, killed_run) == 2, "the resumed attempt starts"
                )
                wait_until(lambda: sleeping_sessions(pg_dsn) == 1, "one pg_sleep is left")
                started = _sleep_started_after(pg_dsn)
                assert started, "the pg_sleep left is the resumed attempt's, not the orphan's"
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        else:
            result = cli(*args)
            assert result.code == 0, result.stderr
            assert sleeping_sessions(pg_dsn) == 0
        alive = bystander.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (bystander_pid,)
        ).fetchone()[0]
        assert alive == 1, "a session batchpilot did not open is never touched"


def _task_attempts(cli: Cli, run_id: str) -> int:
    shown = cli.in_process_twin()("runs", "show", run_id, "-o", "json")  # a poll
    return shown.json()["tasks"]["slow_sql"]["attempts"] if shown.code == 0 else 0


def _sleep_started_after(dsn: str) -> bool:
    """True when the only pg_sleep session left started within the last 30 s of the
    resume, i.e. it is a new backend."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT now() - backend_start < interval '20 seconds' FROM pg_stat_activity "
            "WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'"
        ).fetchone()
    return bool(row and row[0])
