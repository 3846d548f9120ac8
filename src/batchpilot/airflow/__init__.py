"""Run batchpilot pipelines on Apache Airflow: export them as DAGs, drive runs over the REST API.

Importing this package never imports Airflow. The operators an exported DAG
uses (``BatchpilotOperator`` and friends) are loaded on first access, which
only happens inside Airflow::

    from batchpilot.airflow import BatchpilotOperator   # inside a DAG file
"""

from __future__ import annotations

from typing import Any

from batchpilot.airflow.errors import (
    AirflowApiError,
    AirflowAuthError,
    AirflowConfigError,
    AirflowError,
    AirflowNotFound,
    AirflowUnreachable,
    DagImportError,
    DagNotParsed,
)
from batchpilot.airflow.export import ExportedDag, check_exportable, export_pipeline, render_dag
from batchpilot.airflow.layout import dag_id_for
from batchpilot.airflow.settings import AirflowSettings, WorkerSettings
from batchpilot.airflow.states import (
    compensation_state_from_airflow,
    run_status_from_airflow,
    task_state_from_airflow,
)

_OPERATORS = (
    "BatchpilotOperator",
    "BatchpilotCompensationOperator",
    "BatchpilotOutcomeOperator",
)


def __getattr__(name: str) -> Any:
    if name in _OPERATORS:
        from batchpilot.airflow import operator

        return getattr(operator, name)
    raise AttributeError(f"module 'batchpilot.airflow' has no attribute {name!r}")


__all__ = [
    "AirflowApiError",
    "AirflowAuthError",
    "AirflowConfigError",
    "AirflowError",
    "AirflowNotFound",
    "AirflowSettings",
    "AirflowUnreachable",
    "BatchpilotCompensationOperator",
    "BatchpilotOperator",
    "BatchpilotOutcomeOperator",
    "DagImportError",
    "DagNotParsed",
    "ExportedDag",
    "WorkerSettings",
    "check_exportable",
    "compensation_state_from_airflow",
    "dag_id_for",
    "export_pipeline",
    "render_dag",
    "run_status_from_airflow",
    "task_state_from_airflow",
]
