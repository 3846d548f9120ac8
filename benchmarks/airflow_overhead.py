"""Orchestration overhead: batchpilot locally vs the same pipelines exported to Airflow.

Usage::

    python benchmarks/airflow_overhead.py [--reps R] [--workers W]

Two graphs of no-op tasks (``Task("t")``, the ``empty`` step): a 100-task
chain and a 1 -> 200 -> 1 fan-out (202 tasks).

- batchpilot: ``Pipeline.run()`` wall time on this machine, state in SQLite
  (WAL) under ``.bench/home-af``, after a 3-task warm-up run.
- Airflow 3.3.2: the pipelines exported with ``batchpilot export airflow``
  (each node a ``BatchpilotOperator`` running the same step) and run with
  ``dag.test()`` in ``<repo>/.venv-airflow`` (the test suite's Airflow venv,
  created here if missing), after a 3-task warm-up DAG. ``dag.test()`` runs
  tasks in one process without a scheduler: a real scheduler adds about
  1.2 s per task on this machine (see shared/notes/measured-here.md).

Prints the table, per-task milliseconds, and one ``RATIO`` line per graph
(Airflow time / batchpilot time). Exit 0, or 2 if a run failed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    BENCH,
    EXIT_BROKEN,
    EXIT_OK,
    REPO,
    BenchmarkBroken,
    median,
    print_table,
    progress,
    run_measured,
    scratch,
)

AIRFLOW_VERSION = "3.3.2"
AIRFLOW_VENV = REPO / ".venv-airflow"
CHAIN_TASKS = 100
FANOUT_WIDTH = 200
SHAPES = {"chain": f"bench_chain_{CHAIN_TASKS}", "fanout": f"bench_fanout_{FANOUT_WIDTH}"}


def build(shape: str):
    """The batchpilot pipeline of ``shape``: ``chain``, ``fanout`` or ``warmup``."""
    from batchpilot import Pipeline, Task

    if shape == "fanout":
        pipeline = Pipeline(SHAPES["fanout"])
        source = Task("source")
        middle = [Task(f"m{i}", depends_on=source) for i in range(FANOUT_WIDTH)]
        pipeline.add_tasks([source, *middle, Task("sink", depends_on=middle)])
        return pipeline
    n = CHAIN_TASKS if shape == "chain" else 3
    pipeline = Pipeline(SHAPES["chain"] if shape == "chain" else "bench_warmup")
    tasks = [Task("t0")]
    for i in range(1, n):
        tasks.append(Task(f"t{i}", depends_on=tasks[-1]))
    pipeline.add_tasks(tasks)
    return pipeline


def task_count(shape: str) -> int:
    """Tasks in a graph."""
    return CHAIN_TASKS if shape == "chain" else FANOUT_WIDTH + 2


def run_batchpilot(reps: int, workers: int) -> dict[str, list[float]]:
    """Time ``Pipeline.run()`` for each shape in this process (after a warm-up run)."""
    from batchpilot.settings import Settings

    home = BENCH / "home-af"
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home, workers=workers)
    build("warmup").run(settings=settings)
    out: dict[str, list[float]] = {}
    for shape in SHAPES:
        pipeline = build(shape)
        runs = []
        for _ in range(reps):
            started = time.perf_counter()
            result = pipeline.run(settings=settings)
            runs.append(time.perf_counter() - started)
            ok = sum(str(t.state) == "success" for t in result.tasks.values())
            if str(result.status) != "success" or ok != task_count(shape):
                raise BenchmarkBroken(f"batchpilot {shape}: {ok}/{task_count(shape)} succeeded")
        out[shape] = runs
    shutil.rmtree(home, ignore_errors=True)
    return out


def airflow_python() -> Path:
    """The Airflow venv's Python, created (Airflow + batchpilot editable) if it is missing."""
    python = AIRFLOW_VENV / "bin" / "python"
    probe = "import airflow, batchpilot.airflow.operator; print(airflow.__version__)"
    if python.exists():
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == AIRFLOW_VERSION:
            return python
    progress(f"creating {AIRFLOW_VENV} with apache-airflow=={AIRFLOW_VERSION} (a few minutes)")
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(AIRFLOW_VENV)], check=True)
    for args in (["apache-airflow==" + AIRFLOW_VERSION], ["-e", str(REPO)]):
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", *args])
        if done.returncode != 0:
            raise BenchmarkBroken(f"pip install {' '.join(args)} into {AIRFLOW_VENV} failed")
    return python


def run_airflow(reps: int) -> dict:
    """Export the pipelines and time ``dag.test()`` on each in the Airflow venv."""
    from batchpilot.airflow import export_pipeline

    python = airflow_python()
    home = scratch("airflow")
    shutil.rmtree(home, ignore_errors=True)
    dags = scratch("airflow", "dags")
    for shape in ("warmup", *SHAPES):
        export_pipeline(build(shape).to_spec(), dags, source="benchmarks/airflow_overhead.py")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "BATCHPILOT_AIRFLOW_ARTIFACTS": str(home / "artifacts"),
        "PATH": f"{AIRFLOW_VENV / 'bin'}:/usr/bin:/bin",
    }
    progress("airflow db migrate")
    migrate = run_measured(
        [str(AIRFLOW_VENV / "bin" / "airflow"), "db", "migrate"],
        env=env,
        log=BENCH / "airflow-migrate.log",
    )
    if migrate.returncode != 0:
        raise BenchmarkBroken(f"airflow db migrate failed; see {BENCH / 'airflow-migrate.log'}")
    worker = Path(__file__).with_name("_airflow_worker.py")
    progress(f"dag.test() on {', '.join(SHAPES.values())}, {reps} run(s) each")
    cmd = [str(python), str(worker), *SHAPES.values(), "--reps", str(reps)]
    data = run_measured(cmd, env=env, cwd=home, log=BENCH / "airflow-worker.log").json()
    return {shape: data[dag_id] for shape, dag_id in SHAPES.items()} | {
        "airflow": data["airflow"],
        "warmup_s": data["warmup_s"],
    }


def main() -> int:
    """Run both and print the table and ratio lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=1, help="runs per graph; median counts")
    parser.add_argument("--workers", type=int, default=4, help="batchpilot workers (4)")
    args = parser.parse_args()
    try:
        progress(f"batchpilot: chain of {CHAIN_TASKS}, fan-out 1->{FANOUT_WIDTH}->1")
        ours = run_batchpilot(args.reps, args.workers)
        progress("airflow: the same pipelines, exported")
        theirs = run_airflow(args.reps)
    except BenchmarkBroken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    rows = []
    for shape in SHAPES:
        for tool, runs in (("batchpilot", ours[shape]), ("airflow dag.test()", theirs[shape])):
            rows.append(
                [
                    shape,
                    task_count(shape),
                    tool,
                    f"{median(runs):.2f}",
                    f"{median(runs) * 1000 / task_count(shape):.1f}",
                    " ".join(f"{r:.2f}" for r in runs),
                ]
            )
    print()
    print(
        f"batchpilot (workers={args.workers}, state in SQLite WAL) vs Airflow "
        f"{theirs['airflow']} dag.test() on the exported DAGs "
        f"(Airflow warm-up DAG: {theirs['warmup_s']:.1f}s)"
    )
    print_table(["graph", "tasks", "tool", "median s", "ms/task", "runs s"], rows)
    print()
    for shape in SHAPES:
        ratio = median(theirs[shape]) / median(ours[shape])
        print(f"RATIO airflow_{shape}_vs_batchpilot = {ratio:.1f}x", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
