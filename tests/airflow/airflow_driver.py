"""Runs inside the Airflow virtual environment (not the project's): one long-lived process
that imports Airflow once and serves the test suite's requests one after another.

Usage: ``python airflow_driver.py`` with AIRFLOW_HOME set. It answers on stdout, one JSON
document a line; the first line, ``{"ready": AIRFLOW_VERSION}``, says Airflow is imported.
Then it reads requests from stdin, one JSON document a line::

    {"command": "migrate", "env": {...}}                        # airflow db migrate
    {"command": "dagbag", "args": [DAGS_FOLDER], "env": {...}}  # describe the DAGs of a folder
    {"command": "test", "args": [DAG_ID, CONF], "env": {...}}   # dag.test() one DAG of
                                                                 # $AIRFLOW_HOME/dags

and answers each with ``{"result": ...}`` or ``{"error": TRACEBACK}``. A request runs with
``env`` as its whole environment (e.g. the AWS variables of one test), restored after it;
its AIRFLOW_* variables must be the process's own, since Airflow reads its configuration
once, at import. Every request builds its own DagBag from the files as they are on disk.
Everything else the process prints (Airflow's and the tasks' logs) goes to stderr.

What one process saves is Airflow's import and, for ``test``, the start of its in-process
execution API (cached by Airflow for the life of the process): together about 15 of the
17 CPU seconds a ``dag.test()`` of a small DAG took in a process of its own.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO


def _seconds(value: Any) -> float | None:
    return value.total_seconds() if value is not None else None


def _state(value: Any) -> str | None:
    """An Airflow enum or string as its plain string value."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def migrate() -> dict[str, Any]:
    """``airflow db migrate`` through Airflow's own command line parser, in this process."""
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    args = cli_parser.get_parser().parse_args(["db", "migrate"])
    write_default_airflow_configuration_if_needed()  # as the ``airflow`` command does
    args.func(args)
    return {"migrated": True}


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


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "migrate": migrate,
    "dagbag": describe_dagbag,
    "test": test_dag,
}


def _airflow_variables(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("AIRFLOW")}


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """Run with ``env`` as the whole environment; the process's own again afterwards."""
    own = dict(os.environ)
    if _airflow_variables(env) != _airflow_variables(own):
        raise ValueError(
            "a request's AIRFLOW_* variables differ from the driver's: Airflow read its "
            "configuration at import, so start a driver per AIRFLOW_HOME and configuration"
        )
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(own)


def _answer(request: Mapping[str, Any]) -> dict[str, Any]:
    from airflow import settings

    try:
        command = COMMANDS[request["command"]]
        with _environment(request.get("env") or os.environ):
            return {"result": command(*request.get("args", []))}
    except Exception:
        return {"error": traceback.format_exc()}
    finally:
        if settings.Session is not None:
            settings.Session.remove()  # the next request starts with a session of its own


def serve(requests: TextIO, answers: TextIO) -> None:
    """Answer each request line of ``requests`` with one line on ``answers`` until EOF."""
    import airflow

    import batchpilot.airflow.operator  # noqa: F401  (what the exported DAGs import)

    answers.write(json.dumps({"ready": airflow.__version__}) + "\n")
    answers.flush()
    for line in requests:
        if line.strip():
            answers.write(json.dumps(_answer(json.loads(line)), default=str) + "\n")
            answers.flush()


def main() -> None:
    """Keep stdout for the answers; send whatever else writes to it to stderr."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin, answers)
    # Every answer is out and every request's database session committed and removed.
    # Skipped: Airflow's shutdown of its in-process execution API, which waited out two
    # 5 s timeouts at every exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
