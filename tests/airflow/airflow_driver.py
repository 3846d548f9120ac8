"""Runs inside the Airflow virtual environment (not the project's): load or test exported DAGs.

Usage::

    python airflow_driver.py dagbag DAGS_FOLDER        # import every DAG file, describe them
    python airflow_driver.py test DAG_ID [CONF_JSON]    # dag.test() one DAG of $AIRFLOW_HOME/dags

Prints one JSON document on its last stdout line. AIRFLOW_HOME must be set
(and migrated, for ``test``).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _seconds(value: Any) -> float | None:
    return value.total_seconds() if value is not None else None


def _state(value: Any) -> str | None:
    """An Airflow enum or string as its plain string value."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def describe_dagbag(folder: str) -> dict[str, Any]:
    """Import every DAG file in ``folder`` with Airflow's DagBag; describe DAGs and errors."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=folder)
    dags = {}
    for dag_id, dag in sorted(bag.dags.items()):
        tasks = {}
        for task in dag.tasks:
            tasks[task.task_id] = {
                "operator": type(task).__name__,
                "upstream": sorted(task.upstream_task_ids),
                "trigger_rule": _state(task.trigger_rule),
                "retries": task.retries,
                "retry_delay": _seconds(task.retry_delay),
                "retry_exponential_backoff": task.retry_exponential_backoff,
                "max_retry_delay": _seconds(getattr(task, "max_retry_delay", None)),
                "execution_timeout": _seconds(task.execution_timeout),
                "has_on_failure_callback": bool(task.on_failure_callback),
                "has_on_success_callback": bool(task.on_success_callback),
                "has_on_retry_callback": bool(task.on_retry_callback),
            }
        dags[dag_id] = {
            "fileloc": dag.fileloc,
            "schedule": None if dag.timetable is None else getattr(dag.timetable, "summary", None),
            "params": {k: dag.params[k] for k in dag.params},
            "max_active_tasks": dag.max_active_tasks,
            "tasks": tasks,
        }
    return {"import_errors": dict(bag.import_errors), "dags": dags}


def test_dag(dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    """Run one DAG of the configured DAGs folder with ``dag.test()``; report its states."""
    from airflow.configuration import conf as airflow_conf
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=airflow_conf.get("core", "dags_folder"))
    if dag_id not in bag.dags:
        return {"error": f"no DAG {dag_id}", "import_errors": dict(bag.import_errors)}
    dag = bag.dags[dag_id]
    dag_run = dag.test(run_conf=conf or None, logical_date=None)
    tasks = {
        ti.task_id: {"state": _state(ti.state), "try_number": ti.try_number}
        for ti in dag_run.get_task_instances()
    }
    return {"run_id": dag_run.run_id, "state": _state(dag_run.state), "tasks": tasks}


def main() -> None:
    """Dispatch on the first argument and print the JSON result."""
    command = sys.argv[1]
    if command == "dagbag":
        result = describe_dagbag(sys.argv[2])
    elif command == "test":
        conf = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
        result = test_dag(sys.argv[2], conf)
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
