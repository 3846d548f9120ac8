"""REST API latency: paging executions over a big state store, and execute → running.

Usage::

    python benchmarks/api.py [--runs N] [--requests R] [--clients C] [--skip-execute] [--quick]

Part 1 fills a SQLite state store under ``.bench/api/`` with ``--runs`` runs
(default 100,000; 20 pipelines, mixed statuses), serves the API over real HTTP
(uvicorn on 127.0.0.1, as ``serve`` does) and times ``GET /executions?limit=50``
with httpx: the first page, a page deep in the list (by cursor), a filtered
page, each ``--requests`` times from one client, then the first page from
``--clients`` concurrent clients. Part 2 starts ``batchpilot serve`` and times
``POST /pipelines/{name}/execute`` until the store shows the run ``running``
(a worker process picked it up).

Targets (issue 12): p95 of ``GET /executions?limit=50`` < 50 ms with 100,000
runs; ``POST execute`` → ``running`` < 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from _common import progress, scratch
from sqlalchemy import insert

from batchpilot.api import ApiServer, create_app
from batchpilot.scheduler.serve import ServeContext
from batchpilot.settings import Settings
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.tables import runs
from batchpilot.store.tokens import TokenScope

SERVE = (sys.executable, "-m", "batchpilot", "serve")
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
                conn.execute(insert(runs), batch)
            batch = []
    if batch:
        with store.engine.begin() as conn:
            conn.execute(insert(runs), batch)


def timed_gets(client: httpx.Client, url: str, params: dict, count: int) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        response = client.get(url, params=params)
        times.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200 or len(response.json()["items"]) != params["limit"]:
            raise SystemExit(f"bad answer {response.status_code}: {response.text[:200]}")
    return times


def part_listing(args: argparse.Namespace, folder: Path) -> list[tuple[str, float, float]]:
    folder.mkdir(parents=True, exist_ok=True)
    store = RunStore(f"sqlite:///{folder / 'state.db'}")
    progress(f"filling {args.runs:,} runs")
    fill(store, args.runs)
    _, secret = store.tokens.create("bench", TokenScope.READ)
    context = ServeContext(settings=Settings(home=folder / "home"), store=store)
    server = ApiServer(create_app(context, entries=list), port=0)
    server.start()
    base = f"http://127.0.0.1:{server.port}/api/v1"
    headers = {"Authorization": f"Bearer {secret}"}
    results = []
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            timed_gets(client, "/executions", {"limit": 50}, 20)  # warm up
            first = timed_gets(client, "/executions", {"limit": 50}, args.requests)
            results.append(("first page", percentile(first, 0.5), percentile(first, 0.95)))
            page = client.get("/executions", params={"limit": 500}).json()
            for _ in range(args.runs // 1000):
                page = client.get(
                    "/executions", params={"limit": 500, "cursor": page["next_cursor"]}
                ).json()
            deep_params = {"limit": 50, "cursor": page["next_cursor"]}
            deep = timed_gets(client, "/executions", deep_params, args.requests)
            results.append(("page at half", percentile(deep, 0.5), percentile(deep, 0.95)))
            filtered_params = {"limit": 50, "pipeline": "pipeline_08", "status": "failed"}
            filtered = timed_gets(client, "/executions", filtered_params, args.requests)
            results.append(
                ("pipeline+status", percentile(filtered, 0.5), percentile(filtered, 0.95))
            )
        concurrent: list[float] = []
        lock = threading.Lock()

        def one_client() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                times = timed_gets(client, "/executions", {"limit": 50}, 10)
            with lock:
                concurrent.extend(times)

        threads = [threading.Thread(target=one_client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results.append(
            (
                f"{args.clients} clients",
                percentile(concurrent, 0.5),
                percentile(concurrent, 0.95),
            )
        )
    finally:
        context.stopping.set()
        server.stop()
        store.dispose()
    return results


def part_execute(folder: Path) -> list[float]:
    pipelines = folder / "pipelines"
    pipelines.mkdir(parents=True, exist_ok=True)
    (pipelines / "hello.yaml").write_text("name: hello\nnodes:\n  - {id: a, type: empty}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
    env["BATCHPILOT_HOME"] = str(folder / "home")
    store = RunStore.for_home(folder / "home")
    _, secret = store.tokens.create("bench-run", TokenScope.RUN)
    log = folder / "serve.log"
    serve = subprocess.Popen(
        [*SERVE, "--pipelines", str(pipelines), "--port", "0"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    times = []
    try:
        deadline = time.monotonic() + 120
        url = None
        while url is None and time.monotonic() < deadline:
            found = re.findall(r"API on (http://\S+/api/v1)", log.read_text())
            url = found[-1] if found else None
            time.sleep(0.1)
        if url is None:
            raise SystemExit(f"serve did not start:\n{log.read_text()}")
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for _ in range(5):
                began = time.perf_counter()
                run_id = client.post("/pipelines/hello/execute", json={}).json()["run_id"]
                while store.get_run(run_id).status is RunStatus.QUEUED:
                    time.sleep(0.005)
                times.append((time.perf_counter() - began) * 1000)
                while not store.get_run(run_id).status.is_terminal():
                    time.sleep(0.05)
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
        store.dispose()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--skip-execute", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10,000 runs, 50 requests")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.requests = 10_000, 50
    folder = scratch("api")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    missed = False
    print(f"\nGET /executions?limit=50 over {args.runs:,} runs (SQLite), ms")
    print(f"{'case':<18}{'p50':>8}{'p95':>8}")
    results = part_listing(args, folder / "listing")
    for name, p50, p95 in results:
        print(f"{name:<18}{p50:>8.1f}{p95:>8.1f}")
    for name, _, p95 in results:
        ok = p95 < 50
        missed |= not ok
        key = name.replace(" ", "_").replace("+", "_")
        print(
            f"TARGET executions_{key}_p95_ms = {p95:.1f} ms (target < 50 ms) "
            f"{'PASS' if ok else 'MISS'}"
        )
    if not args.skip_execute:
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
