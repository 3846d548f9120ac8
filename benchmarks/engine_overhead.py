"""Engine overhead: batchpilot vs Dagster on 1,000 no-op tasks, side by side.

Usage::

    python benchmarks/engine_overhead.py [--tasks N] [--quick] [--reps R] [--dagster-sqlite]
                                         [--batchpilot-only] [--python-tasks]

Two graphs of no-op tasks: a chain (t0 -> t1 -> ... -> tN-1) and a fan-out
(source -> N tasks -> sink, N + 2 tasks). Each tool runs in its own fresh
subprocess; each graph is run ``--reps`` times and the median counts.

- batchpilot: each task an ``empty`` step (no ``run``), which the engine runs on its
  own thread; ``--python-tasks`` makes each a ``python`` step calling a no-op function,
  as Dagster's ops are, which runs on a worker thread under the step's timeout and
  cancel. ``Pipeline.run()`` wall time, with every state transition of
  every task persisted to SQLite (WAL) under ``.bench/engine/home-*``. The
  state database is created (migrations) by a small warm-up run first, as it
  would exist on any machine that has run a pipeline before. Beside the wall
  time, the CPU time of the batchpilot process during the run
  (``time.process_time()``: the engine thread, the worker threads and the
  SQLite writes together), which a host loaded by other work does not inflate
  the way it inflates wall time.
- Dagster (pinned below, own venv ``.bench/venv-dagster``): wall time of
  ``job.execute_in_process()`` only (graph construction excluded), after a
  3-op warm-up job. By default on Dagster's ephemeral in-memory instance;
  ``--dagster-sqlite`` adds a run on a persistent SQLite instance.

Targets: batchpilot <= 1 ms per task (wall) on both graphs, and >= 8x faster
than Dagster (ephemeral instance) on both. Exit 0 if all targets hold, 1 if
one is missed, 2 if a run failed. ``--batchpilot-only`` runs batchpilot alone
(no competitor venv needed) and checks only its ms/task target.

Adding a competitor (Airflow, issue 4): write a worker like
``_dagster_worker.py`` that prints ``{"chain": [s...], "fanout": [s...]}``
and register a function in ``COMPETITORS`` below; it gets a table row, and
a ratio line if listed in ``RATIO_AGAINST``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    BENCH,
    EXIT_BROKEN,
    REPO,
    BenchmarkBroken,
    Targets,
    ensure_venv,
    median,
    print_table,
    progress,
    run_measured,
    scratch,
)

DAGSTER_VERSION = "1.13.28"
SHAPES = ("chain", "fanout")
TARGET_MS_PER_TASK = 1.0
TARGET_SPEEDUP = 8.0


def task_count(shape: str, n: int) -> int:
    """Tasks in a graph: N for the chain, N + 2 for the fan-out."""
    return n if shape == "chain" else n + 2


# --- batchpilot, run in a subprocess of the project venv ------------------------------------


def noop() -> None:
    """The body of a ``--python-tasks`` task: nothing, so orchestration is what is timed."""


def build_pipeline(shape: str, n: int, python_tasks: bool = False):  # -> batchpilot.Pipeline
    """Build the batchpilot pipeline for ``shape`` with ``n`` no-op tasks (``empty``
    steps, or ``python`` steps calling :func:`noop`)."""
    from functools import partial

    from batchpilot import Pipeline

    if python_tasks:
        from batchpilot import Task as _Task

        Task = partial(_Task, run=noop)
    else:
        from batchpilot import Task

    pipeline = Pipeline(f"{shape}_{n}")
    if shape == "chain":
        tasks, prev = [], None
        for i in range(n):
            task = Task(f"t{i}")
            if prev is not None:
                task.depends_on(prev)
            tasks.append(task)
            prev = task
    else:
        source = Task("source")
        middle = [Task(f"m{i}", depends_on=source) for i in range(n)]
        sink = Task("sink", depends_on=middle)
        tasks = [source, *middle, sink]
    pipeline.add_tasks(tasks)
    return pipeline


def batchpilot_worker(n: int, reps: int, workers: int, python_tasks: bool) -> dict:
    """Runs inside the subprocess: time ``Pipeline.run()`` for each shape."""
    import batchpilot
    from batchpilot.settings import Settings

    home = BENCH / "engine" / f"home-{n}-{time.time_ns()}"
    settings = Settings(home=home, workers=workers)
    out: dict[str, object] = {"batchpilot": batchpilot.__version__}
    try:
        started = time.perf_counter()
        warm = build_pipeline("chain", 3).run(settings=settings)
        out["warmup_s"] = time.perf_counter() - started
        if str(warm.status) != "success":
            raise SystemExit(f"warm-up run ended {warm.status}")
        for shape in SHAPES:
            pipeline = build_pipeline(shape, n, python_tasks)
            started = time.perf_counter()
            pipeline.to_spec()
            out[f"{shape}_spec_s"] = time.perf_counter() - started
            runs, cpu = [], []
            for _ in range(reps):
                started, cpu_started = time.perf_counter(), time.process_time()
                result = pipeline.run(settings=settings)
                runs.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
                states = [str(t.state) for t in result.tasks.values()]
                ok = sum(s == "success" for s in states)
                if str(result.status) != "success" or ok != task_count(shape, n):
                    raise SystemExit(
                        f"batchpilot {shape}: run {result.status}, {ok}/{task_count(shape, n)} "
                        "tasks succeeded"
                    )
            out[shape] = runs
            out[f"{shape}_cpu"] = cpu
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out


def run_batchpilot(n: int, reps: int, workers: int, python_tasks: bool) -> dict:
    """Run :func:`batchpilot_worker` in a fresh project-venv subprocess."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--tasks",
        str(n),
        "--reps",
        str(reps),
        "--workers",
        str(workers),
        *(["--python-tasks"] if python_tasks else []),
    ]
    return run_measured(cmd, cwd=REPO, log=BENCH / "engine" / "batchpilot.stderr.log").json()


# --- competitors, each in its own venv -----------------------------------------------------


def run_dagster(n: int, reps: int, instance: Path | None = None) -> dict:
    """Run ``_dagster_worker.py`` in ``.bench/venv-dagster``."""
    python = ensure_venv(
        "venv-dagster", [f"dagster=={DAGSTER_VERSION}"], "dagster", DAGSTER_VERSION
    )
    worker = Path(__file__).with_name("_dagster_worker.py")
    cmd = [str(python), str(worker), "--tasks", str(n), "--reps", str(reps)]
    if instance is not None:
        shutil.rmtree(instance, ignore_errors=True)
        instance.mkdir(parents=True)
        cmd += ["--instance", str(instance)]
    env = {"DAGSTER_HOME": str(scratch("engine", "dagster-home")), "DAGSTER_DISABLE_TELEMETRY": "1"}
    try:
        return run_measured(
            cmd, env=env, cwd=scratch("engine"), log=BENCH / "engine" / "dagster.stderr.log"
        ).json()
    finally:
        if instance is not None:
            shutil.rmtree(instance, ignore_errors=True)


#: name -> function(n, reps) returning {"chain": [seconds...], "fanout": [seconds...]}.
#: Issue 4 adds "airflow" here (a worker running ``dag.test()`` in ``.bench/venv-airflow``).
COMPETITORS: dict[str, Callable[[int, int], dict]] = {
    "dagster": run_dagster,
}
#: competitors batchpilot must beat by TARGET_SPEEDUP
RATIO_AGAINST = ("dagster",)


def main() -> int:
    """Run both tools on both graphs and print the table and target lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=None, help="tasks per graph (1000)")
    parser.add_argument("--quick", action="store_true", help="200 tasks instead of 1000")
    parser.add_argument("--reps", type=int, default=3, help="runs per graph; median counts")
    parser.add_argument("--workers", type=int, default=4, help="batchpilot workers (4)")
    parser.add_argument(
        "--dagster-sqlite",
        action="store_true",
        help="also run Dagster on a persistent SQLite instance",
    )
    parser.add_argument(
        "--batchpilot-only",
        action="store_true",
        help="run batchpilot alone (no competitor venv); check only its ms/task target",
    )
    parser.add_argument(
        "--python-tasks",
        action="store_true",
        help="each task a python step calling a no-op function (default: empty steps)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.tasks or (200 if args.quick else 1000)

    if args.worker:
        import json

        timings = batchpilot_worker(n, args.reps, args.workers, args.python_tasks)
        print(json.dumps(timings), flush=True)
        return 0

    scratch("engine")
    results: dict[str, dict] = {}
    try:
        kind = "python" if args.python_tasks else "empty"
        progress(f"batchpilot: {n} no-op {kind} tasks, chain and fan-out, {args.reps} runs each")
        results["batchpilot"] = run_batchpilot(n, args.reps, args.workers, args.python_tasks)
        for name, runner in () if args.batchpilot_only else COMPETITORS.items():
            progress(f"{name}: same graphs, {args.reps} runs each")
            results[name] = runner(n, args.reps)
        if args.dagster_sqlite and not args.batchpilot_only:
            progress("dagster on a persistent SQLite instance")
            results["dagster (sqlite)"] = run_dagster(
                n, args.reps, instance=BENCH / "engine" / "dagster-instance"
            )
    except BenchmarkBroken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return EXIT_BROKEN

    print()
    print_table(
        ["graph", "tasks", "tool", "median s", "ms/task", "CPU ms/task", "runs s"],
        _rows(results, n),
    )
    bp = results["batchpilot"]
    competitors = ", ".join(
        f"{tool} {data.get(tool, '')} (warm-up {data.get('warmup_s', 0):.2f}s)"
        for tool, data in results.items()
        if tool != "batchpilot"
    )
    print(
        f"batchpilot {bp['batchpilot']} (workers={args.workers}, state in SQLite WAL); "
        f"warm-up {bp['warmup_s']:.2f}s (creates the state DB); spec build (inside run): "
        f"chain {bp['chain_spec_s'] * 1000:.0f} ms, fanout {bp['fanout_spec_s'] * 1000:.0f} ms"
        + (f"; against: {competitors}" if competitors else "")
    )

    targets = Targets()
    for shape in SHAPES:
        tasks = task_count(shape, n)
        ours = median(bp[shape])
        targets.check(
            f"engine_{shape}_ms_per_task",
            ours * 1000 / tasks,
            "<=",
            TARGET_MS_PER_TASK,
            unit="ms",
            kind="TARGET",
        )
        for rival in RATIO_AGAINST:
            if rival in results:
                targets.check(
                    f"engine_{shape}_vs_{rival}",
                    median(results[rival][shape]) / ours,
                    ">=",
                    TARGET_SPEEDUP,
                )
    return targets.report()


def _rows(results: dict[str, dict], n: int) -> list[list[object]]:
    """One table row per graph and tool: median wall time, ms/task, CPU ms/task."""
    rows: list[list[object]] = []
    for shape in SHAPES:
        tasks = task_count(shape, n)
        for tool, data in results.items():
            runs = data[shape]
            cpu = data.get(f"{shape}_cpu")
            rows.append(
                [
                    shape,
                    tasks,
                    tool,
                    f"{median(runs):.2f}",
                    f"{median(runs) * 1000 / tasks:.2f}",
                    f"{median(cpu) * 1000 / tasks:.2f}" if cpu else "-",
                    " ".join(f"{r:.2f}" for r in runs),
                ]
            )
    return rows


if __name__ == "__main__":
    sys.exit(main())
