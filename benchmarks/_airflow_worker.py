"""Airflow side of ``airflow_overhead.py``; runs inside the Airflow venv, not the project's.

Usage: ``python _airflow_worker.py DAG_ID [DAG_ID...] --reps R`` with AIRFLOW_HOME set
(metadata database migrated, exported DAGs in its ``dags`` folder).

Each DAG is run with ``dag.test()`` (in-process, no scheduler), after a 3-task
warm-up DAG so one-off import costs are not charged to the graphs. Only the
``dag.test()`` call is timed. Prints one JSON line:
``{"airflow": "3.x", "warmup_s": s, "<dag_id>": [s, ...], ...}``.
"""

from __future__ import annotations

import argparse
import json
import time

import airflow
from airflow.configuration import conf
from airflow.dag_processing.dagbag import DagBag


def timed_test(dag) -> float:
    """Run the DAG once with dag.test(); return the wall seconds, checking every task succeeded."""
    started = time.perf_counter()
    dag_run = dag.test(logical_date=None)
    elapsed = time.perf_counter() - started
    states = [str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()]
    ok = sum(s == "success" for s in states)
    if str(getattr(dag_run.state, "value", dag_run.state)) != "success" or ok != len(dag.tasks):
        raise SystemExit(f"airflow run of {dag.dag_id}: {ok}/{len(dag.tasks)} tasks succeeded")
    return elapsed


def main() -> None:
    """Parse arguments, run the DAGs, print the JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("dag_ids", nargs="+")
    parser.add_argument("--warmup", default="bench_warmup")
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    bag = DagBag(dag_folder=conf.get("core", "dags_folder"))
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    out: dict[str, object] = {"airflow": airflow.__version__}
    out["warmup_s"] = timed_test(bag.dags[args.warmup])
    for dag_id in args.dag_ids:
        out[dag_id] = [timed_test(bag.dags[dag_id]) for _ in range(args.reps)]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
