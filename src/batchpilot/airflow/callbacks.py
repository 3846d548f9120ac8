"""Batchpilot callbacks (``on_failure``, ``on_run_success``…) as Airflow callback callables.

Airflow calls ``on_*_callback`` with its context; :class:`ActionCallback`
runs the pipeline's actions there. Airflow never retries a callback, so the
action's own retry policy is applied in-process. A failing callback is
logged, never raised: it must not change the task's or the run's outcome.
No Airflow import is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from batchpilot.airflow.runtime import (
    PipelineInfo,
    action_from_document,
    run_action,
    run_artifacts,
)
from batchpilot.airflow.settings import WorkerSettings

log = logging.getLogger("batchpilot.airflow.callbacks")


def context_ds(context: Mapping[str, Any]) -> str:
    """The run's ``{{ ds }}``: Airflow's ``ds``, or the run's ``run_after`` date for a
    DAG run without a logical date."""
    ds = context.get("ds")
    if ds:
        return str(ds)
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None) or getattr(dag_run, "start_date", None)
    if run_after is None:
        from datetime import date

        return date.today().isoformat()
    return run_after.date().isoformat()


def context_run_id(context: Mapping[str, Any]) -> str:
    """The DAG run id (which is also batchpilot's run id for runs it triggered)."""
    run_id = context.get("run_id")
    if run_id:
        return str(run_id)
    return str(getattr(context.get("dag_run"), "run_id", "unknown"))


def context_params(context: Mapping[str, Any]) -> dict[str, Any]:
    """The run's params: the DAG's defaults with ``dag_run.conf`` applied by Airflow."""
    params = context.get("params") or {}
    return {key: params[key] for key in params}


class ActionCallback:
    """An Airflow callback that runs batchpilot actions (steps) of a node or a pipeline."""

    def __init__(
        self,
        *,
        pipeline: Mapping[str, Any] | str,
        event: str,
        actions: Sequence[Mapping[str, Any]],
        node_id: str | None = None,
        artifacts: str | None = None,
    ) -> None:
        self.pipeline = PipelineInfo.from_document(pipeline)
        self.event = event
        self.actions = [dict(a) for a in actions]
        self.node_id = node_id
        self.artifacts = artifacts

    def __call__(self, context: Mapping[str, Any]) -> None:
        """Run every action in order; log (never raise) what fails."""
        settings = WorkerSettings.from_env(artifacts=self.artifacts)
        dag = context.get("dag")
        dag_id = getattr(dag, "dag_id", None) or self.pipeline.name
        run_id = context_run_id(context)
        store = run_artifacts(settings, dag_id, run_id)
        owner = f"{self.node_id}.{self.event}" if self.node_id else self.event
        for index, document in enumerate(self.actions, start=1):
            action_id = f"{owner}.{index}" if len(self.actions) > 1 else owner
            try:
                run_action(
                    pipeline=self.pipeline,
                    action=action_from_document(document),
                    action_id=action_id,
                    params=context_params(context),
                    run_id=run_id,
                    ds=context_ds(context),
                    artifacts=store,
                    connections=settings.connections,
                    log=log,
                    retry_in_process=True,
                )
                log.info("callback %s ran", action_id)
            except Exception:
                log.exception("callback %s failed", action_id)

    def __repr__(self) -> str:
        return f"ActionCallback({self.event!r}, node={self.node_id!r}, actions={len(self.actions)})"
