"""The Airflow operators an exported DAG uses. Imported only inside Airflow.

``batchpilot.airflow`` re-exports these names lazily, so importing batchpilot
never imports Airflow; this module does, at its top.

- :class:`BatchpilotOperator` runs one pipeline node's step.
- :class:`BatchpilotCompensationOperator` undoes one node when the run failed.
- :class:`BatchpilotOutcomeOperator` fails the DAG run when a pipeline task failed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from batchpilot.airflow.callbacks import context_ds, context_params, context_run_id
from batchpilot.airflow.runtime import (
    PipelineInfo,
    action_from_document,
    compensation_skip_reason,
    failed_tasks,
    run_action,
    run_artifacts,
    run_node,
)
from batchpilot.airflow.settings import WorkerSettings
from batchpilot.artifacts import ArtifactStore
from batchpilot.errors import PermanentStepError
from batchpilot.spec.model import NodeSpec

_log = logging.getLogger("batchpilot.airflow")


def _artifact_store(context: Mapping[str, Any], settings: WorkerSettings) -> ArtifactStore:
    return run_artifacts(settings, context["ti"].dag_id, context_run_id(context))


def _task_states(context: Mapping[str, Any], task_ids: Sequence[str]) -> dict[str, str | None]:
    ti = context["ti"]
    run_id = context_run_id(context)
    found = ti.get_task_states(dag_id=ti.dag_id, task_ids=list(task_ids), run_ids=[run_id])
    return dict(found.get(run_id, {}))


class BatchpilotOperator(BaseOperator):
    """Runs the batchpilot step of one pipeline node.

    The config is rendered with batchpilot's own Jinja (``{{ params.x }}``,
    ``{{ run_id }}``, ``{{ ds }}``), with the DAG's params as updated by the
    DAG run's conf. Upstream datasets arrive as Arrow files in the shared
    artifacts folder; XCom carries only their references and row counts.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        pipeline: Mapping[str, Any] | str,
        step_type: str,
        config: Mapping[str, Any] | None = None,
        artifacts: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = PipelineInfo.from_document(pipeline)
        self.step_type = step_type
        self.config = dict(config or {})
        self.artifacts = artifacts

    def execute(self, context: Any) -> dict[str, Any]:
        """Run the step; a config that is invalid once rendered fails without retry."""
        settings = WorkerSettings.from_env(artifacts=self.artifacts)
        upstream_ids = sorted(self.upstream_task_ids)
        pulled = context["ti"].xcom_pull(task_ids=upstream_ids) if upstream_ids else []
        upstream = dict(zip(upstream_ids, pulled or [None] * len(upstream_ids), strict=False))
        node = NodeSpec(
            id=self.task_id,
            type=self.step_type,
            config=self.config,
            upstream=tuple(upstream_ids),
        )
        try:
            return run_node(
                pipeline=self.pipeline,
                node=node,
                params=context_params(context),
                run_id=context_run_id(context),
                ds=context_ds(context),
                attempt=int(getattr(context["ti"], "try_number", 1) or 1),
                upstream=upstream,
                artifacts=_artifact_store(context, settings),
                connections=settings.connections,
                log=_log,
            )
        except PermanentStepError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from exc


class BatchpilotCompensationOperator(BaseOperator):
    """Undoes ``target`` (runs its ``compensate`` action) when the run failed and it succeeded.

    Wired with ``trigger_rule="all_done"`` after every pipeline task and after
    the compensations of ``target``'s descendants; it checks the pipeline
    tasks' states itself and skips when there is nothing to undo.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#fdecea"

    def __init__(
        self,
        *,
        pipeline: Mapping[str, Any] | str,
        target: str,
        action: Mapping[str, Any],
        pipeline_tasks: Sequence[str],
        artifacts: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = PipelineInfo.from_document(pipeline)
        self.target = target
        self.action = dict(action)
        self.pipeline_tasks = list(pipeline_tasks)
        self.artifacts = artifacts

    def execute(self, context: Any) -> dict[str, Any]:
        """Compensate, or raise AirflowSkipException saying why not."""
        states = _task_states(context, self.pipeline_tasks)
        reason = compensation_skip_reason(states, self.pipeline_tasks, self.target)
        if reason is not None:
            raise AirflowSkipException(reason)
        failed = failed_tasks(states, self.pipeline_tasks)
        _log.info("run failed (%s): compensating %s", ", ".join(failed), self.target)
        settings = WorkerSettings.from_env(artifacts=self.artifacts)
        try:
            result = run_action(
                pipeline=self.pipeline,
                action=action_from_document(self.action),
                action_id=self.task_id,
                params=context_params(context),
                run_id=context_run_id(context),
                ds=context_ds(context),
                artifacts=_artifact_store(context, settings),
                connections=settings.connections,
                log=_log,
                retry_in_process=False,
            )
        except PermanentStepError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from exc
        return {"compensated": self.target, "rows_out": result.rows_out}


class BatchpilotOutcomeOperator(BaseOperator):
    """Fails when any pipeline task failed, so the DAG run fails like a local run would.

    Wired with ``trigger_rule="all_done"`` as the DAG's last task.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#eeeeee"

    def __init__(self, *, pipeline_tasks: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_tasks = list(pipeline_tasks)

    def execute(self, context: Any) -> None:
        """Raise AirflowFailException naming the failed tasks, if any."""
        states = _task_states(context, self.pipeline_tasks)
        failed = failed_tasks(states, self.pipeline_tasks)
        if failed:
            raise AirflowFailException(f"the pipeline failed: {', '.join(failed)} failed")
        _log.info("the pipeline succeeded")
