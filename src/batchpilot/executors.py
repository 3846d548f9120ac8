"""Every place a run can execute, as the edges (CLI, scheduler, REST API) hand them to
:class:`~batchpilot.engine.RunService`: this machine, and Airflow over its REST API.

It sits above the engine because the Airflow executor is an edge built on the engine;
the engine itself knows only the :class:`~batchpilot.engine.Executor` interface.
"""

from __future__ import annotations

from batchpilot.airflow.executor import AirflowExecutor
from batchpilot.engine.executors import Executors, LocalExecutor


def default_executors() -> Executors:
    """This machine and Airflow (configured by ``BATCHPILOT_AIRFLOW_*`` when first used)."""
    return Executors([LocalExecutor(), AirflowExecutor()])


__all__ = ["default_executors"]
