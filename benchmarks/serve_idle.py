"""What an idle ``batchpilot serve`` costs, and how soon it takes its first run.

Usage::

    python benchmarks/serve_idle.py [--runs N] [--idle-s S] [--skip-idle] [--skip-first-run]

Fills a SQLite state store under ``.bench/serve_idle/`` with ``--runs`` ended runs of
a few pipelines (default 200, made by the real engine), starts ``batchpilot serve``
on it (scheduler, dispatcher, monitor, API and dashboard; one scheduled pipeline
whose next slot is a day away), lets it settle, then reads its CPU time
(``/proc/PID/stat`` utime + stime, the fork server included) over ``--idle-s``
seconds (default 30) with nothing to do: CPU milliseconds per second idle.

Then, in a fresh ``serve`` on a fresh home, the first ``POST /pipelines/hello/execute``
sent the moment the API listens, timed until the store shows the run ``running``,
and a second one after it (the fork server warm by then).

No competitor: an idle process has nothing to compare with; the numbers are
tracked from session to session in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import psutil
from _common import progress, scratch
from _serve_client import HELLO_YAML, start_serve, stop_serve, time_executes_on_fresh_serve

from batchpilot.engine import RunService
from batchpilot.pipeline import load_pipeline
from batchpilot.settings import Settings
from batchpilot.store import RunStore

#: seconds serve is left to start (the fork server imports) before the idle window
SETTLE_S = 15.0


def write_pipelines(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hello.yaml").write_text(HELLO_YAML)
    (folder / "nightly.yaml").write_text(
        "name: nightly\nschedule: '0 3 * * *'\nmonitoring: {deadline: '06:00'}\n"
        "nodes:\n  - {id: extract, type: empty}\n  - {id: load, type: empty, depends_on: extract}\n"
    )


def fill(home: Path, folder: Path, count: int) -> None:
    store = RunStore.for_home(home)
    service = RunService(settings=Settings(home=home), store=store)
    specs = [load_pipeline(folder / "hello.yaml"), load_pipeline(folder / "nightly.yaml")]
    for i in range(count):
        service.start(specs[i % 2])
    store.dispose()


def cpu_s(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of ``pid``, and of its live children (the fork server)."""
    process = psutil.Process(pid)
    own = process.cpu_times()
    children = 0.0
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        children += times.user + times.system
    return own.user + own.system, children


def measure_idle(root: Path, runs: int, idle_s: float) -> tuple[float, float]:
    home, folder = root / "home", root / "pipelines"
    write_pipelines(folder)
    progress(f"filling the store with {runs} runs")
    fill(home, folder, runs)
    serve, _ = start_serve(folder, home, root / "serve-idle.log")
    try:
        time.sleep(SETTLE_S)
        (own, children), began = cpu_s(serve.pid), time.perf_counter()
        time.sleep(idle_s)
        (own_after, children_after), wall = cpu_s(serve.pid), time.perf_counter() - began
    finally:
        stop_serve(serve)
    return (own_after - own) / wall * 1000, (children_after - children) / wall * 1000


def measure_first_runs(root: Path) -> list[float]:
    home, folder = root / "home-first", root / "pipelines-first"
    write_pipelines(folder)
    return time_executes_on_fresh_serve(folder, home, root / "serve-first.log", 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-first-run", action="store_true")
    args = parser.parse_args()
    root = scratch("serve_idle")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    result: dict[str, object] = {}
    if not args.skip_idle:
        own, children = measure_idle(root, args.runs, args.idle_s)
        result["idle_cpu_ms_per_s"] = round(own, 2)
        result["idle_cpu_ms_per_s_fork_server"] = round(children, 2)
    if not args.skip_first_run:
        first, second = measure_first_runs(root)
        result["first_execute_to_running_ms"] = round(first, 1)
        result["second_execute_to_running_ms"] = round(second, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
