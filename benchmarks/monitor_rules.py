"""Alert rules at a run's end: evaluating every rule with 10,000 runs of history on SQLite.

Usage::

    python benchmarks/monitor_rules.py [--history N] [--evaluations E] [--quick]

A SQLite state store under ``.bench/monitor/`` gets ``--history`` ended runs
(default 10,000) of one pipeline (an extract and a load, rows recorded, 1 in 20
failed), written in bulk, then ``--evaluations`` (default 100) more runs, each
evaluated right after it ends with :func:`batchpilot.monitor.evaluate.evaluate_run`
(what ``batchpilot run`` and ``serve`` call): the run and its tasks read, the
last 10 successful runs read for the baselines (indexed), every rule decided,
and the evaluation recorded in one transaction (episodes opened and resolved,
messages queued in the outbox for a routed channel). One run in five of the
evaluated ones is slow or thin, so episodes open and close as they would.

Timed: each ``evaluate_run`` call (wall, ``perf_counter``); median and p95
printed, and the median CPU time of the process per evaluation (the wall time
depends on what else the machine runs). Target: median <= 5 ms and p95 <= 5 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from _common import EXIT_BROKEN, BenchmarkBroken, Targets, print_table, progress, scratch

TARGET_MS = 5.0


def _document() -> dict:  # type: ignore[type-arg]
    from batchpilot.spec.loader import build_pipeline
    from batchpilot.spec.serialize import spec_to_document

    return spec_to_document(
        build_pipeline(
            {
                "name": "daily_etl",
                "notify": {"default": ["oncall"]},
                "nodes": [
                    {"id": "extract", "type": "empty"},
                    {"id": "load", "type": "load.postgres", "depends_on": ["extract"]},
                ],
            }
        )
    )


def write_history(store, document, count: int, start: datetime) -> datetime:  # type: ignore[no-untyped-def]
    """``count`` ended runs, a minute apart, in bulk; returns when the last one ended."""
    from _bench_stores import insert_run_rows
    from sqlalchemy import insert

    from batchpilot.store.tables import task_instances

    run_rows, task_rows = [], []
    for index in range(count):
        started = start + timedelta(minutes=index)
        failed = index % 20 == 19
        run_id = f"hist-{index:06d}"
        run_rows.append(
            {
                "run_id": run_id,
                "pipeline": document["name"],
                "status": "failed" if failed else "success",
                "spec": document,
                "params": {},
                "ds": started.date().isoformat(),
                "created_at": started,
                "started_at": started,
                "ended_at": started + timedelta(seconds=30 + index % 7),
                "error": "failed tasks: load" if failed else None,
                "needs_attention": False,
                "executor": "local",
                "cancel_requested": False,
                "triggered_by": "schedule",
            }
        )
        for position, task_id in enumerate(("extract", "load")):
            task_rows.append(
                {
                    "run_id": run_id,
                    "task_id": task_id,
                    "position": position,
                    "state": "failed" if failed and task_id == "load" else "success",
                    "attempts": 1,
                    "rows_in": 10_000 if task_id == "load" else None,
                    "rows_out": 10_000,
                    "rows_rejected": 3 if task_id == "load" else None,
                    "duration_s": 15.0,
                }
            )
    with store.engine.begin() as conn:
        insert_run_rows(conn, run_rows)
        conn.execute(insert(task_instances), task_rows)
    return start + timedelta(minutes=count)


def add_ended_run(store, document, run_id: str, started: datetime, seconds: float, rows: int):  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from batchpilot.store.tables import runs, task_instances

    store.create_run(
        run_id=run_id,
        pipeline=document["name"],
        spec=document,
        params={},
        ds=started.date().isoformat(),
        source_path=None,
        task_ids=["extract", "load"],
    )
    with store.engine.begin() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.run_id == run_id)
            .values(
                status="success", started_at=started, ended_at=started + timedelta(seconds=seconds)
            )
        )
        conn.execute(
            update(task_instances)
            .where(task_instances.c.run_id == run_id)
            .values(state="success", rows_in=rows, rows_out=rows, rows_rejected=0, duration_s=1.0)
        )


def run(history: int, evaluations: int) -> int:
    from batchpilot.monitor.evaluate import evaluate_run
    from batchpilot.notify import SystemClock
    from batchpilot.store import RunStore

    folder = scratch("monitor")
    shutil.rmtree(folder)
    folder.mkdir(parents=True)
    store = RunStore(f"sqlite:///{folder / 'state.db'}")
    document = _document()
    progress(f"writing {history:,} ended runs of history")
    now = write_history(store, document, history, datetime(2026, 1, 1, tzinfo=UTC))
    clock = SystemClock()
    defined = {"oncall"}
    timings: list[float] = []
    cpu: list[float] = []
    progress(f"evaluating {evaluations} runs as each ends")
    for index in range(evaluations):
        odd = index % 5 == 4
        run_id = f"eval-{index:04d}"
        add_ended_run(
            store,
            document,
            run_id,
            now + timedelta(minutes=index),
            seconds=200.0 if odd else 30.0,
            rows=1_000 if odd else 10_000,
        )
        began, began_cpu = time.perf_counter(), time.process_time()
        plan = evaluate_run(store, run_id, defined_channels=defined, clock=clock)
        timings.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - began_cpu) * 1000)
        if plan is None:
            raise BenchmarkBroken(f"run {run_id} was not evaluated")
    opened = len(store.alerts.list(limit=10_000))
    queued = len(store.list_notifications(limit=10_000))
    expected = 2 * (evaluations // 5)  # slow and low_volume open on each odd run
    if opened != expected:
        raise BenchmarkBroken(f"expected {expected} episodes, found {opened}")
    store.dispose()
    timings.sort()
    median = statistics.median(timings)
    p95 = timings[max(0, round(0.95 * len(timings)) - 1)]
    cpu_median = statistics.median(cpu)
    print_table(
        ["history", "evaluations", "median ms", "p95 ms", "max ms", "CPU median ms", "episodes"],
        [
            [
                history,
                evaluations,
                f"{median:.2f}",
                f"{p95:.2f}",
                f"{timings[-1]:.2f}",
                f"{cpu_median:.2f}",
                opened,
            ]
        ],
    )
    progress(f"{queued} messages queued; load average {os.getloadavg()[0]:.1f}")
    targets = Targets()
    targets.check("monitor_rules_median_ms", median, "<=", TARGET_MS, "ms", kind="TARGET")
    targets.check("monitor_rules_p95_ms", p95, "<=", TARGET_MS, "ms", kind="TARGET")
    return targets.report()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1,000 runs of history")
    args = parser.parse_args()
    try:
        return run(1_000 if args.quick else args.history, args.evaluations)
    except BenchmarkBroken as exc:
        print(f"benchmark broken: {exc}", file=sys.stderr)
        return EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
