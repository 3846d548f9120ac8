"""REST API latency: paging executions over a big state store, and execute → running.

Usage::

    python benchmarks/api.py [--store sqlite|postgres] [--postgres] [--runs N]
                             [--requests R] [--clients C] [--client-interval S]
                             [--open-seconds D] [--skip-execute] [--quick]

Part 1 fills a state store with ``--runs`` runs (20 pipelines, mixed statuses):
SQLite under ``.bench/api/`` (default 100,000 runs), or with ``--store postgres``
PostgreSQL (default 1,000,000 runs, inserted in SQL; ``$BATCHPILOT_TEST_PG_DSN`` or an
embedded server). It starts ``batchpilot serve --no-scheduler`` on that store in its
own process (uvicorn on 127.0.0.1, as users run it) and times ``GET
/executions?limit=50`` with httpx: the first page, a page halfway down the list (by
cursor), a page of one pipeline and status, a page of one pipeline, each
``--requests`` times from one client, then the first page from ``--clients`` (50)
concurrent clients in two ways. Beside each case: serve's CPU time per request and the
answers per second. Part 2 (SQLite only) starts ``batchpilot serve`` and times ``POST
/pipelines/{name}/execute`` until the store shows the run ``running`` (a worker
process picked it up). ``--quick``: a tenth of the runs, 50 requests, 5 s open loop.

The two ways of 50 concurrent clients, and how to read them:

- **closed loop** (``50 clients closed``): 50 threads of this process, each sending
  10 requests back to back, the next as soon as the last answer came. This measures
  the server's throughput when it is saturated; its latency is queueing by
  construction: with 50 requests always outstanding, each waits for the ~49 ahead of
  it, so p95 ≈ 50 x (serve's time per request + the client's, which shares the GIL of
  this process and the machine's 2 cores with serve). It is not held to the latency
  target; read its requests per second.
- **open loop** (``50 clients open``): 50 clients, each on its own open connection,
  each sending one request every ``--client-interval`` seconds (1 s: a dashboard or a
  program polling the API), their first sends spread over the first second, for
  ``--open-seconds`` (20 s). The rate was chosen before measuring and is printed
  (offered 50 requests/s) beside the achieved rate. Latency runs from the intended send
  time (no coordinated omission: a slow answer does not delay, and so hide, the
  requests behind it). The clients are asyncio tasks on httpx.AsyncClient in this
  process (``_open_loop.py``): at 50 requests/s they take a few percent of a core, so
  the client is not the bottleneck; the output shows their own send lag and CPU per
  request to check that. This is the case held to the issue's p95 < 50 ms.

Targets (issue 12): p95 of ``GET /executions?limit=50`` < 50 ms with 100,000
runs in SQLite and 1,000,000 in PostgreSQL (one client, and 50 open-loop clients);
``POST execute`` → ``running`` < 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from _bench_stores import STORES, bench_store_url, fill_in_sql, insert_run_rows
from _common import progress, scratch
from _open_loop import OpenLoopResult, run_open_loop
from _serve_client import HELLO_YAML, start_serve, stop_serve, time_executes_on_fresh_serve
from sqlalchemy import select

from batchpilot.store import RunStore
from batchpilot.store.records import aware
from batchpilot.store.run_queries import RunCursor
from batchpilot.store.tables import runs
from batchpilot.store.tokens import TokenScope

IDLE_S = 5.0
STATUSES = ["success"] * 8 + ["failed", "cancelled"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def fill(store: RunStore, count: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    batch = []
    for i in range(count):
        created = start + timedelta(seconds=30 * i)
        batch.append(
            {
                "run_id": f"{created:%Y%m%dT%H%M%S}-{i:06x}",
                "pipeline": f"pipeline_{i % 20:02d}",
                "status": STATUSES[i % len(STATUSES)],
                "spec": {"name": f"pipeline_{i % 20:02d}", "nodes": [{"id": "a", "type": "empty"}]},
                "params": {},
                "ds": f"{created:%Y-%m-%d}",
                "created_at": created,
                "started_at": created,
                "ended_at": created + timedelta(seconds=12),
                "needs_attention": False,
                "executor": "local",
                "cancel_requested": False,
                "triggered_by": "schedule",
            }
        )
        if len(batch) == 5000:
            with store.engine.begin() as conn:
                insert_run_rows(conn, batch)
            batch = []
    if batch:
        with store.engine.begin() as conn:
            insert_run_rows(conn, batch)


PG_RUNS = """
SELECT to_char(t AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS') || '-' || lpad(to_hex(i), 6, '0'),
       'pipeline_' || lpad((i % 20)::text, 2, '0'),
       CASE i % 10 WHEN 8 THEN 'failed' WHEN 9 THEN 'cancelled' ELSE 'success' END,
       '{}'::json, to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD'), t, t, t + interval '12 seconds',
       false, 'local', false, 'schedule'
FROM {series},
     LATERAL (SELECT timestamptz '2026-01-01 00:00:00+00' + i * interval '30 seconds' AS t) AS x
"""
PG_SPEC = (
    "json_build_object('name', pipeline,"
    " 'nodes', json_build_array(json_build_object('id', 'a', 'type', 'empty')))"
)


@dataclass(frozen=True)
class Case:
    """One measured case: latencies (ms), serve's CPU ms per request, answers per second."""

    name: str
    times: list[float]
    serve_cpu_ms: float
    per_s: float

    def p(self, share: float) -> float:
        return percentile(self.times, share)


def wrong_page(response: httpx.Response, limit: int = 50) -> str | None:
    """Why ``response`` is not a full page of runs (None: it is)."""
    if response.status_code != 200 or len(response.json()["items"]) != limit:
        return f"bad answer {response.status_code}: {response.text[:200]}"
    return None


def timed_gets(client: httpx.Client, url: str, params: dict, count: int) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        response = client.get(url, params=params)
        times.append((time.perf_counter() - began) * 1000)
        wrong = wrong_page(response, params["limit"])
        if wrong is not None:
            raise SystemExit(wrong)
    return times


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cursor_at(store: RunStore, position: int) -> str:
    """The page cursor after the ``position``-th newest run (read once, not paged to)."""
    query = (
        select(runs.c.created_at, runs.c.run_id)
        .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        .offset(position)
        .limit(1)
    )
    with store.engine.connect() as conn:
        created, run_id = conn.execute(query).one()
    return RunCursor(aware(created), run_id).encode()


def pipelines_folder(folder: Path) -> Path:
    """``folder/pipelines``, holding the ``hello`` pipeline that execute runs."""
    pipelines = folder / "pipelines"
    pipelines.mkdir(parents=True, exist_ok=True)
    (pipelines / "hello.yaml").write_text(HELLO_YAML)
    return pipelines


def part_listing(args: argparse.Namespace, folder: Path) -> tuple[list[Case], Case, OpenLoopResult]:
    """The single-client cases, the closed-loop case and the open-loop run."""
    folder.mkdir(parents=True, exist_ok=True)
    with bench_store_url(args.store, folder / "store") as url:
        store = RunStore(url)
        progress(f"filling {args.runs:,} runs ({args.store})")
        if args.store == "postgres":
            fill_in_sql(store, PG_RUNS, args.runs, PG_SPEC)
        else:
            fill(store, args.runs)
        progress("filled")
        _, secret = store.tokens.create("bench", TokenScope.READ)
        half = cursor_at(store, args.runs // 2)
        serve, base = start_serve(
            pipelines_folder(folder),
            folder / "home",
            folder / "serve.log",
            "--no-scheduler",
            database_url=url,
        )
        try:
            return measure_listing(args, base, secret, half, serve.pid)
        finally:
            stop_serve(serve)
            store.dispose()


def measure_listing(
    args: argparse.Namespace, base: str, secret: str, half: str, pid: int
) -> tuple[list[Case], Case, OpenLoopResult]:
    headers = {"Authorization": f"Bearer {secret}"}
    results = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        timed_gets(client, "/executions", {"limit": 50}, 20)  # warm up
        cpu = cpu_s(pid)
        time.sleep(IDLE_S)
        idle = (cpu_s(pid) - cpu) * 1000 / IDLE_S
        progress(f"serve idle: {idle:.1f} ms CPU per second (its loops, counted in each case)")
        cases = [
            ("first page", {"limit": 50}),
            ("page at half", {"limit": 50, "cursor": half}),
            ("pipeline+status", {"limit": 50, "pipeline": "pipeline_08", "status": "failed"}),
            ("pipeline", {"limit": 50, "pipeline": "pipeline_03"}),
        ]
        for name, params in cases:
            cpu, began = cpu_s(pid), time.perf_counter()
            times = timed_gets(client, "/executions", params, args.requests)
            elapsed = time.perf_counter() - began
            used = (cpu_s(pid) - cpu) * 1000 / args.requests
            results.append(Case(name, times, used, args.requests / elapsed))
    closed = measure_closed_loop(args.clients, base, headers, pid)
    progress(
        f"open loop: {args.clients} clients x 1 request every {args.client_interval:g} s "
        f"for {args.open_seconds:g} s"
    )
    cpu = cpu_s(pid)
    opened = run_open_loop(
        base,
        "/executions",
        params={"limit": 50},
        headers=headers,
        clients=args.clients,
        interval_s=args.client_interval,
        duration_s=args.open_seconds,
        check=wrong_page,
    )
    sent = len(opened.latencies_ms) + len(opened.errors)
    opened_cpu = (cpu_s(pid) - cpu) * 1000 / max(1, sent)
    progress(f"open loop: serve CPU {opened_cpu:.2f} ms per request")
    return results, closed, opened


def measure_closed_loop(clients: int, base: str, headers: dict[str, str], pid: int) -> Case:
    """``clients`` threads, each sending 10 requests back to back (see the docstring)."""
    concurrent: list[float] = []
    lock = threading.Lock()

    def one_client() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            times = timed_gets(client, "/executions", {"limit": 50}, 10)
        with lock:
            concurrent.extend(times)

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    cpu, began = cpu_s(pid), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    used = (cpu_s(pid) - cpu) * 1000 / len(concurrent)
    return Case(f"{clients} clients closed", concurrent, used, len(concurrent) / elapsed)


def report_listing(
    args: argparse.Namespace, results: list[Case], closed: Case, opened: OpenLoopResult
) -> bool:
    """Print the tables and TARGET lines; True when a target was missed."""
    print(f"\nGET /executions?limit=50 over {args.runs:,} runs ({args.store}), ms")
    print(f"{'case':<22}{'p50':>8}{'p95':>8}{'serve CPU/req':>15}{'req/s':>8}")
    for case in [*results, closed]:
        print(
            f"{case.name:<22}{case.p(0.5):>8.1f}{case.p(0.95):>8.1f}"
            f"{case.serve_cpu_ms:>15.2f}{case.per_s:>8.0f}"
        )
    print(
        f"  ({closed.name}: {args.clients} requests always outstanding, so its latency is "
        f"queueing, ~{args.clients} x the time per request; read its req/s)"
    )
    lat = opened.latencies_ms
    print(
        f"\n{args.clients} clients open loop: each 1 request every {args.client_interval:g} s "
        f"for {args.open_seconds:g} s on its own connection (latency from the intended send)"
    )
    print(
        f"  offered {opened.offered_per_s:.1f} req/s, achieved {opened.achieved_per_s:.1f} "
        f"req/s, {len(lat)} answers, {len(opened.errors)} errors"
    )
    if lat:
        print(
            f"  p50 {percentile(lat, 0.5):.1f}  p95 {percentile(lat, 0.95):.1f}  "
            f"p99 {percentile(lat, 0.99):.1f}  max {max(lat):.1f} ms"
        )
    print(
        f"  client: send lag p95 {percentile(opened.send_lag_ms, 0.95):.1f} ms, "
        f"{opened.client_cpu_ms_per_request:.2f} ms CPU per request"
    )
    for error in opened.errors[:3]:
        print(f"  error: {error}")
    missed = False
    for case in results:
        ok = case.p(0.95) < 50
        missed |= not ok
        key = case.name.replace(" ", "_").replace("+", "_")
        print(
            f"TARGET {args.store}_executions_{key}_p95_ms = {case.p(0.95):.1f} ms "
            f"(target < 50 ms) {'PASS' if ok else 'MISS'}"
        )
    open_p95 = percentile(lat, 0.95) if lat else float("inf")
    ok = open_p95 < 50 and not opened.errors
    missed |= not ok
    print(
        f"TARGET {args.store}_executions_{args.clients}_clients_open_loop_p95_ms = "
        f"{open_p95:.1f} ms at {opened.offered_per_s:.0f} req/s offered "
        f"(target < 50 ms) {'PASS' if ok else 'MISS'}"
    )
    print(
        f"INFO {args.store}_executions_{args.clients}_clients_closed_loop = "
        f"{closed.per_s:.0f} req/s, p95 {closed.p(0.95):.1f} ms (saturation; no target)"
    )
    return missed


def part_execute(folder: Path) -> list[float]:
    return time_executes_on_fresh_serve(
        pipelines_folder(folder), folder / "home", folder / "serve.log", 5
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=STORES, default="sqlite")
    parser.add_argument("--postgres", action="store_true", help="same as --store postgres")
    parser.add_argument("--runs", type=int, help="100,000 on SQLite, 1,000,000 on PostgreSQL")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--client-interval", type=float, default=1.0, help="open loop: seconds between sends"
    )
    parser.add_argument("--open-seconds", type=float, default=20.0, help="open loop: duration")
    parser.add_argument("--skip-execute", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the runs, 50 requests, 5 s open loop"
    )
    args = parser.parse_args()
    if args.postgres:
        args.store = "postgres"
    if args.runs is None:
        args.runs = 1_000_000 if args.store == "postgres" else 100_000
    if args.quick:
        args.runs, args.requests, args.open_seconds = args.runs // 10, 50, 5.0
    folder = scratch("api")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    results, closed, opened = part_listing(args, folder / "listing")
    missed = report_listing(args, results, closed, opened)
    if not args.skip_execute and args.store == "sqlite":
        times = part_execute(folder / "execute")
        p50 = percentile(times, 0.5)
        ok = p50 < 200
        missed |= not ok
        print(json.dumps({"execute_to_running_ms": [round(t, 1) for t in times]}))
        print(
            f"TARGET execute_to_running_median_ms = {p50:.0f} ms (target < 200 ms) "
            f"{'PASS' if ok else 'MISS'}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
