"""How fast the dashboard's reads are on a big state store: 100,000 runs in SQLite,
1,000,000 in PostgreSQL.

Seeds a fresh store with ``--runs`` runs over 200 days (one pipeline in five fails
now and then), then times, over ``--reps`` repetitions each: the runs list's first
page, a page 1,000 pages deep (by cursor), a page filtered by pipeline and status,
and the overview of the busiest day. Prints p50 and p95 in milliseconds, and the
CPU time of this process per call (the store's own CPU is PostgreSQL's, not counted).
Issue 12's targets: a page of 50 under 50 ms (p95), the overview under 300 ms.

Usage: ``python benchmarks/dashboard_queries.py [--store sqlite|postgres] [--postgres]
[--runs N] [--reps 50]`` (PostgreSQL: ``$BATCHPILOT_TEST_PG_DSN`` or an embedded server,
filled in SQL).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from _bench_stores import STORES, bench_store_url, fill_in_sql, insert_run_rows
from _common import scratch

from batchpilot.monitor.overview import day_window, load_overview
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.run_queries import RunFilter

DAYS = 200
PG_RUNS = f"""
SELECT to_char(t AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS') || '-' || lpad(i::text, 7, '0'),
       'pipeline_' || lpad((i % 40)::text, 2, '0'),
       CASE WHEN i % 35 = 0 THEN 'failed' ELSE 'success' END,
       '{{}}'::json, to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD'), t, t,
       t + (30 + i % 50) * interval '1 second', false, 'local', false, 'schedule'
FROM {{series}},
     LATERAL (SELECT timestamptz '2026-11-30 00:00:00+00' - interval '{DAYS} days'
                     + i * (interval '{DAYS} days' / :n) AS t) AS x
"""
END = datetime(2026, 11, 30, tzinfo=UTC)


def seed(store: RunStore, count: int) -> datetime:
    """Insert ``count`` ended runs spread over :data:`DAYS` days; returns the last day."""
    end = END
    step = timedelta(days=DAYS) / count
    rows = []
    for i in range(count):
        created = end - timedelta(days=DAYS) + i * step
        failed = i % 5 == 0 and i % 7 == 0
        rows.append(
            {
                "run_id": f"{created:%Y%m%dT%H%M%S}-{i:07d}",
                "pipeline": f"pipeline_{i % 40:02d}",
                "status": (RunStatus.FAILED if failed else RunStatus.SUCCESS).value,
                "source_path": None,
                "spec": {},
                "params": {},
                "ds": created.date().isoformat(),
                "created_at": created,
                "started_at": created,
                "ended_at": created + timedelta(seconds=30 + i % 50),
                "needs_attention": False,
                "executor": "local",
                "cancel_requested": False,
                "triggered_by": "schedule",
            }
        )
    with store.engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            insert_run_rows(conn, rows[start : start + 10_000])
    return end - timedelta(days=1)


def timed(reps: int, action: Callable[[], object]) -> tuple[float, float, float]:
    """p50 and p95 of the wall time, and the mean CPU time of this process (ms)."""
    action()  # warm the page cache
    samples = []
    cpu = time.process_time()
    for _ in range(reps):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    cpu_ms = (time.process_time() - cpu) * 1000 / reps
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=STORES, default="sqlite")
    parser.add_argument("--postgres", action="store_true", help="same as --store postgres")
    parser.add_argument("--runs", type=int, help="100,000 on SQLite, 1,000,000 on PostgreSQL")
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    if args.postgres:
        args.store = "postgres"
    if args.runs is None:
        args.runs = 1_000_000 if args.store == "postgres" else 100_000
    folder = scratch("dashboard_queries")
    shutil.rmtree(folder, ignore_errors=True)
    with bench_store_url(args.store, folder) as url:
        store = RunStore(url)
        started = time.perf_counter()
        if args.store == "postgres":
            fill_in_sql(store, PG_RUNS, args.runs, "'{}'::json")
            last_day = END - timedelta(days=1)
        else:
            last_day = seed(store, args.runs)
        print(f"seeded {args.runs:,} runs ({args.store}) in {time.perf_counter() - started:.1f} s")
        deep = store.queries.page(RunFilter(), limit=50)
        for _ in range(1000):
            if deep.next_cursor is None:
                break
            deep = store.queries.page(RunFilter(), after=deep.next_cursor, limit=50)
        cursor = deep.next_cursor
        window = day_window(last_day.date(), ZoneInfo("UTC"))
        cases: dict[str, Callable[[], object]] = {
            "runs page 1 (50)": lambda: store.queries.page(RunFilter(), limit=50),
            "runs page 1,001 (cursor)": lambda: store.queries.page(
                RunFilter(), after=cursor, limit=50
            ),
            "runs of a pipeline, failed": lambda: store.queries.page(
                RunFilter(pipeline="pipeline_35", statuses=(RunStatus.FAILED,)), limit=50
            ),
            "overview of a day": lambda: load_overview(store, window),
        }
        for name, action in cases.items():
            p50, p95, cpu = timed(args.reps, action)
            print(f"{name:32s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   CPU {cpu:6.1f} ms")
        day_runs = len(store.queries.created_between(window.start, window.end))
        print(f"(the overview's day holds {day_runs} runs of 40 pipelines)")
        store.dispose()


if __name__ == "__main__":
    main()
