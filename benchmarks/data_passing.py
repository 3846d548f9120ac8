"""Data passing: hand a 1M-row, 10-column table from one task to the next.

Usage::

    python benchmarks/data_passing.py [--rows N] [--quick] [--reps R] [--json-reps R]

Two ways, each in its own fresh subprocess of the project venv, on the same
deterministic table (``_data.make_table``: 3 int, 2 float, 2 timestamp and 3
string columns):

- arrow (batchpilot's way): ``ArtifactStore(root).write_table(task, table)``
  writes an Arrow IPC artifact under ``.bench/passing/``, then
  ``read_table(ref)`` memory-maps it and the consumer sums a column.
- json (XCom style): ``df.to_dict(orient="records")`` + ``json.dumps`` ->
  ``json.loads`` + ``pd.DataFrame(...)`` (+ ``pd.to_datetime`` on the two
  timestamp columns, so the consumer gets the same table back), then the
  same column sum. The JSON text stays in memory: no file, no database, so
  this side is measured at its cheapest.

Timed: the hand-off only (table generation and ``to_pandas`` excluded).
Memory: peak RSS growth over the process's RSS just before the hand-off
(the kernel's high-water mark VmHWM, reset just before the hand-off).
Arrow runs ``--reps`` times (3), JSON ``--json-reps`` times (1: a minute
each here); medians count. Target: arrow >= 100x less time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

from _common import (
    BENCH,
    EXIT_BROKEN,
    REPO,
    BenchmarkBroken,
    Targets,
    median,
    mib,
    print_table,
    progress,
    run_measured,
    scratch,
)

TARGET_SPEEDUP = 100.0


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS and return that RSS.

    Linux: writing 5 to /proc/self/clear_refs resets VmHWM, so the peak read
    afterwards belongs to the hand-off alone; exact, and no sampling thread
    competes with the measured code for the GIL.
    """
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _status_kb("VmRSS")


def peak_rss() -> int:
    """The peak RSS since :func:`reset_peak_rss`."""
    return _status_kb("VmHWM")


def worker(method: str, rows: int) -> dict:
    """Runs inside the subprocess: one hand-off, timed and watched."""
    import gc

    import pandas as pd
    import pyarrow.compute as pc
    from _data import make_table

    from batchpilot.artifacts import ArtifactStore, read_table

    table = make_table(rows)
    producer_df = None
    if method == "json":
        producer_df = table.to_pandas()
        del table
    gc.collect()
    baseline = reset_peak_rss()
    phases: dict[str, float] = {}
    started = time.perf_counter()
    if method == "arrow":
        root = BENCH / "passing" / f"run-{time.time_ns()}"
        ref = ArtifactStore(root).write_table("producer", table)
        phases["write_s"] = time.perf_counter() - started
        received = read_table(ref)
        total = pc.sum(received["amount"]).as_py()
        count = received.num_rows
    else:
        records = producer_df.to_dict(orient="records")
        payload = json.dumps(records, default=str)
        del records
        phases["write_s"] = time.perf_counter() - started
        received = pd.DataFrame(json.loads(payload))
        for column in ("created_at", "shipped_at"):
            received[column] = pd.to_datetime(received[column])
        total = float(received["amount"].sum())
        count = len(received)
        phases["json_mb"] = len(payload) / 2**20
    elapsed = time.perf_counter() - started
    peak = peak_rss()
    if method == "arrow":
        shutil.rmtree(root, ignore_errors=True)
    return {
        "seconds": elapsed,
        "rss_growth": peak - baseline,
        "baseline_rss": baseline,
        "rows": count,
        "sum": total,
        **phases,
    }


def run_worker(method: str, rows: int) -> dict:
    """Run one hand-off in a fresh subprocess; check it returned every row."""
    cmd = [sys.executable, __file__, "--worker", method, "--rows", str(rows)]
    out = run_measured(cmd, cwd=REPO, log=BENCH / "passing" / f"{method}.stderr.log").json()
    if out["rows"] != rows:
        raise BenchmarkBroken(f"{method}: consumer got {out['rows']} rows, expected {rows}")
    return out


def main() -> int:
    """Measure both methods and print the table and the target line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="rows (1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--reps", type=int, default=3, help="arrow hand-offs (median)")
    parser.add_argument("--json-reps", type=int, default=1, help="JSON hand-offs (median)")
    parser.add_argument("--worker", choices=("arrow", "json"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)

    if args.worker:
        print(json.dumps(worker(args.worker, rows)), flush=True)
        return 0

    scratch("passing")
    results: dict[str, list[dict]] = {"arrow": [], "json": []}
    try:
        for method, reps in (("arrow", args.reps), ("json", args.json_reps)):
            for rep in range(reps):
                progress(f"{method}: hand-off {rep + 1}/{reps} of {rows:,} rows x 10 columns")
                results[method].append(run_worker(method, rows))
    except BenchmarkBroken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    sums = {m: results[m][0]["sum"] for m in results}
    if abs(sums["arrow"] - sums["json"]) > 1e-6 * abs(sums["arrow"]):
        print(f"BROKEN: the consumers disagree on sum(amount): {sums}", file=sys.stderr)
        return EXIT_BROKEN

    rows_out = []
    for method, label in (
        ("arrow", "arrow IPC artifact, mmap read (batchpilot)"),
        ("json", "to_dict records + json dumps/loads + DataFrame"),
    ):
        runs = results[method]
        extra = f"{median([r['json_mb'] for r in runs]):,.0f} MB JSON" if method == "json" else ""
        rows_out.append(
            [
                label,
                f"{median([r['seconds'] for r in runs]):.3f}",
                f"{median([r['write_s'] for r in runs]):.3f}",
                mib(median([r["rss_growth"] for r in runs])),
                " ".join(f"{r['seconds']:.3f}" for r in runs),
                extra,
            ]
        )
    print()
    print(f"{rows:,} rows x 10 columns; sum(amount) = {sums['arrow']:,.2f} on both sides")
    print_table(["method", "s", "producer s", "peak RSS growth", "runs s", ""], rows_out)
    targets = Targets()
    ratio = median([r["seconds"] for r in results["json"]]) / median(
        [r["seconds"] for r in results["arrow"]]
    )
    targets.check("data_passing_arrow_vs_json", ratio, ">=", TARGET_SPEEDUP)
    return targets.report()


if __name__ == "__main__":
    sys.exit(main())
