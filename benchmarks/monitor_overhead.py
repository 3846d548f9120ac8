"""Monitoring's cost to a run: the same run with the alert rules and notifications on, and off.

Usage::

    python benchmarks/monitor_overhead.py [--reps R] [--history N] [--rows N] [--quick]

Two homes under ``.bench/monitor_overhead/`` (SQLite state stores), each given
``--history`` (default 300) ended runs of one pipeline, written in bulk. The
pipeline has 20 tasks: four branches of ``extract.csv`` → three
``transform.sql`` (DuckDB) → ``load.file``, on CSV files of ``--rows`` rows
(default 2,000), rows recorded at every task.

Side by side, in one process, ``--reps`` times (default 15; the order of the
two alternates each rep): ``RunService.start`` of the pipeline

- **off**: no monitor, no channel;
- **on**: what ``batchpilot run`` attaches: ``RunEndMonitor`` with a webhook
  channel to an HTTP server on 127.0.0.1 (``notify: {default: [hook]}``). Every
  fourth rep reads a thin file (100 rows a branch), so ``low_volume`` opens an
  episode there and the next rep resolves it: an alert and a recovery notice
  POSTed every four runs, as well as the evaluation at every run's end.

Timed: each run's wall time (``perf_counter`` around ``start``; the run's
status is recorded and the rules evaluated inside it, deliveries start in a
thread of their own), the process's CPU time over it, and the run-end
monitor's own time inside the "on" runs (what the ratio should be made of). After each "on" run
the deliveries are awaited outside the timed part (as the CLI does after it
printed the result) and that wait is shown apart. Checked: every "on" run was
evaluated, the webhook received exactly the alerts and recoveries expected,
and the "off" store has no episode (exit 2 otherwise).

Target: median wall "on" within 3% of median wall "off"
(``RATIO monitor_overhead``). The CPU medians are printed beside it: on a
machine shared with other work they move less than wall time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _common import EXIT_BROKEN, BenchmarkBroken, Targets, print_table, progress, scratch

TARGET_PERCENT = 3.0
BRANCHES = 4
TRANSFORMS = 3
THIN_ROWS = 100
THIN_EVERY = 4


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _write_pipeline(folder: Path, rows: int) -> tuple[Path, Path, Path]:
    """The pipeline file and its two data files (normal and thin); returns their paths."""
    data, thin = folder / "data.csv", folder / "thin.csv"
    line = "{i},customer {i},{amount},{active}\n"
    body = "".join(line.format(i=i, amount=i % 97, active=i % 3 != 0) for i in range(rows))
    data.write_text("id,name,amount,active\n" + body)
    thin.write_text(
        "id,name,amount,active\n"
        + "".join(line.format(i=i, amount=i % 97, active=i % 3 != 0) for i in range(THIN_ROWS))
    )
    nodes: list[dict[str, Any]] = []
    for branch in range(BRANCHES):
        previous = f"extract_{branch}"
        nodes.append(
            {"id": previous, "type": "extract.csv", "config": {"path": "{{ params.data }}"}}
        )
        for step in range(TRANSFORMS):
            node = f"transform_{branch}_{step}"
            query = (
                f"SELECT id, name, amount * {step + 2} AS amount, active FROM {previous}"
                if step
                else f"SELECT * FROM {previous} WHERE id >= 0"
            )
            nodes.append(
                {
                    "id": node,
                    "type": "transform.sql",
                    "config": {"query": query},
                    "depends_on": [previous],
                }
            )
            previous = node
        nodes.append(
            {
                "id": f"load_{branch}",
                "type": "load.file",
                "config": {"path": f"{{{{ pipeline_dir }}}}/out/{{{{ run_id }}}}-{branch}.csv"},
                "depends_on": [previous],
            }
        )
    document = {
        "name": "overhead",
        "params": {"data": str(data)},
        "monitoring": {"low_volume": {"expected_rows": BRANCHES * rows}},
        "notify": {"default": ["hook"]},
        "nodes": nodes,
    }
    path = folder / "overhead.yaml"
    path.write_text(json.dumps(document, indent=1))
    return path, data, thin


def _write_history(store: Any, document: dict[str, Any], count: int, rows: int) -> None:
    """``count`` successful runs ended before now, in bulk (a few minutes' wall each)."""
    from _bench_stores import insert_run_rows
    from sqlalchemy import insert

    from batchpilot.store.tables import task_instances

    start = datetime.now(UTC) - timedelta(days=count)
    run_rows, task_rows = [], []
    task_ids = [n["id"] for n in document["nodes"]]
    for index in range(count):
        started = start + timedelta(days=index)
        run_id = f"hist-{index:06d}"
        run_rows.append(
            {
                "run_id": run_id,
                "pipeline": document["name"],
                "status": "success",
                "spec": document,
                "params": {},
                "ds": started.date().isoformat(),
                "created_at": started,
                "started_at": started,
                "ended_at": started + timedelta(seconds=120 + index % 7),
                "error": None,
                "needs_attention": False,
                "executor": "local",
                "cancel_requested": False,
                "triggered_by": "schedule",
            }
        )
        for position, task_id in enumerate(task_ids):
            task_rows.append(
                {
                    "run_id": run_id,
                    "task_id": task_id,
                    "position": position,
                    "state": "success",
                    "attempts": 1,
                    "rows_in": rows,
                    "rows_out": rows,
                    "rows_rejected": 0,
                    "duration_s": 5.0,
                }
            )
    with store.engine.begin() as conn:
        insert_run_rows(conn, run_rows)
        conn.execute(insert(task_instances), task_rows)


def run(reps: int, history: int, rows: int) -> int:
    from batchpilot.connections import ConnectionRegistry
    from batchpilot.engine import RunService
    from batchpilot.monitor.run_end import RunEndMonitor, wait_for_deliveries
    from batchpilot.notify import ChannelRegistry, parse_channel
    from batchpilot.pipeline import load_pipeline
    from batchpilot.settings import Settings
    from batchpilot.spec.serialize import spec_to_document
    from batchpilot.store import RunStore

    root = scratch("monitor_overhead")
    shutil.rmtree(root)
    root.mkdir(parents=True)
    path, data, thin = _write_pipeline(root, rows)
    spec = load_pipeline(path)
    document = spec_to_document(spec)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    channels = ChannelRegistry(
        [parse_channel("hook", f"webhook+http://127.0.0.1:{server.server_port}/hook")]
    )
    services = {}
    for arm in ("off", "on"):
        home = root / f"home-{arm}"
        settings = Settings(home=home, workers=4, connections=ConnectionRegistry())
        store = RunStore.for_home(home)
        progress(f"{arm}: writing {history} ended runs of history")
        _write_history(store, document, history, rows)
        services[arm] = RunService(settings=settings, store=store)
    progress("warming up: one run on each side")
    for arm, service in services.items():
        listener = RunEndMonitor(service.store, channels) if arm == "on" else None
        service.start(spec, params={"data": str(data)}, listener=listener)
    wait_for_deliveries()
    _Hook.received.clear()
    monitor_s: list[float] = []

    class TimedMonitor(RunEndMonitor):
        """The CLI's run-end monitor, its own time measured (evaluation + starting delivery)."""

        def run_finished(self, run_id: str, status: Any) -> None:
            began = time.perf_counter()
            super().run_finished(run_id, status)
            monitor_s.append(time.perf_counter() - began)

    wall: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    waits: list[float] = []
    on_runs: list[str] = []
    progress(f"{reps} reps of a {len(spec.nodes)}-task run, off and on side by side")
    for rep in range(reps):
        source = thin if rep % THIN_EVERY == THIN_EVERY - 1 else data
        order = ("off", "on") if rep % 2 == 0 else ("on", "off")
        for arm in order:
            service = services[arm]
            listener = TimedMonitor(service.store, channels) if arm == "on" else None
            began, began_cpu = time.perf_counter(), time.process_time()
            result = service.start(spec, params={"data": str(source)}, listener=listener)
            wall[arm].append(time.perf_counter() - began)
            cpu[arm].append(time.process_time() - began_cpu)
            if not result.succeeded:
                raise BenchmarkBroken(f"the {arm} run {result.run_id} ended {result.status}")
            if arm == "on":
                on_runs.append(result.run_id)
                waited = time.perf_counter()
                if not wait_for_deliveries():
                    raise BenchmarkBroken("deliveries still running after their deadline")
                waits.append(time.perf_counter() - waited)
    thin_runs = len([r for r in range(reps) if r % THIN_EVERY == THIN_EVERY - 1])
    recoveries = len([r for r in range(reps - 1) if r % THIN_EVERY == THIN_EVERY - 1])
    titles = [m.get("title", "") for m in _Hook.received]
    alerts = [t for t in titles if t.startswith("overhead: fewer rows")]
    recovered = [t for t in titles if t.startswith("Recovered: overhead: fewer rows")]
    if (len(alerts), len(recovered)) != (thin_runs, recoveries):
        raise BenchmarkBroken(
            f"expected {thin_runs} alerts and {recoveries} recoveries on the webhook, got "
            f"{len(alerts)} and {len(recovered)}: {titles}"
        )
    unevaluated = [
        r
        for r in on_runs
        if services["on"]
        .store.alerts.unevaluated_ended_runs(
            since=datetime.now(UTC) - timedelta(hours=1), limit=1000
        )
        .count(r)
    ]
    if unevaluated:
        raise BenchmarkBroken(f"runs not evaluated at their end: {unevaluated}")
    if services["off"].store.alerts.list():
        raise BenchmarkBroken("the store without monitoring has alert episodes")
    server.shutdown()
    for service in services.values():
        service.store.dispose()

    off, on = statistics.median(wall["off"]), statistics.median(wall["on"])
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    print_table(
        ["arm", "runs", "median wall ms", "min wall ms", "median CPU ms", "deliveries wait ms"],
        [
            [
                "off",
                reps,
                f"{off * 1000:.1f}",
                f"{min(wall['off']) * 1000:.1f}",
                f"{cpu_off * 1000:.1f}",
                "-",
            ],
            [
                "on",
                reps,
                f"{on * 1000:.1f}",
                f"{min(wall['on']) * 1000:.1f}",
                f"{cpu_on * 1000:.1f}",
                f"{statistics.median(waits) * 1000:.1f} (median)",
            ],
        ],
    )
    monitor_ms = statistics.median(monitor_s) * 1000
    progress(
        f"the run-end monitor inside the 'on' runs: median {monitor_ms:.1f} ms "
        f"({monitor_ms / (off * 1000) * 100:.2f}% of the 'off' median), max "
        f"{max(monitor_s) * 1000:.1f} ms (evaluation; delivery in its own thread)"
    )
    progress(
        f"{len(titles)} messages POSTed ({len(alerts)} alerts, {len(recovered)} recoveries); "
        f"CPU on vs off: {(cpu_on / cpu_off - 1) * 100:+.1f}%"
    )
    targets = Targets()
    targets.check("monitor_overhead", (on / off - 1) * 100, "<=", TARGET_PERCENT, "%")
    return targets.report()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--history", type=int, default=300)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="5 reps")
    args = parser.parse_args()
    try:
        return run(5 if args.quick else args.reps, args.history, args.rows)
    except BenchmarkBroken as exc:
        print(f"benchmark broken: {exc}", file=sys.stderr)
        return EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
