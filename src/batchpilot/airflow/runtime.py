"""Running a node's step, a compensation or a callback inside an Airflow task.

Nothing here imports Airflow: the operators in :mod:`batchpilot.airflow.operator`
translate Airflow's context into these calls and the results back into XCom.
Each runs on the engine's own attempt path (:mod:`batchpilot.engine.attempt`),
as a local run does; Airflow retries a failed task itself. A task's XCom is
:meth:`TaskOutput.to_xcom`: the artifact reference and row counts, never rows.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchpilot.airflow.settings import WorkerSettings
from batchpilot.artifacts import ArtifactRef, ArtifactStore
from batchpilot.artifacts.storage import is_remote, use_s3
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.engine.actions import run_action as run_engine_action
from batchpilot.engine.attempt import AttemptPlan, run_attempt
from batchpilot.engine.building import action_node
from batchpilot.engine.context import RunContext
from batchpilot.engine.handles import AttemptHandle
from batchpilot.engine.outputs import TaskOutput, upstream_inputs
from batchpilot.errors import PermanentStepError, SpecError, StepError, TemplateRenderError
from batchpilot.settings import Settings
from batchpilot.spec.model import ActionSpec, NodeSpec, PipelineSpec, RetryBackoff, RetryPolicy
from batchpilot.spec.params import parse_param_specs, resolve_params
from batchpilot.spec.templating import render_config
from batchpilot.steps.registry import default_registry


@dataclass(frozen=True)
class PipelineInfo:
    """What a task needs to know of its pipeline: its name, folder and default connections."""

    name: str
    folder: str | None = None
    connections: Mapping[str, str] = field(default_factory=dict)
    #: the pipeline's ``params:`` declarations, as in its file
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | str) -> PipelineInfo:
        """Read the ``PIPELINE`` mapping an exported DAG passes to its operators."""
        if isinstance(document, str):
            return cls(name=document)
        return cls(
            name=str(document["name"]),
            folder=document.get("folder"),
            connections=dict(document.get("connections") or {}),
            params=dict(document.get("params") or {}),
        )

    def checked_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The DAG run's params (defaults updated by its conf) checked against the pipeline's
        declarations by :func:`resolve_params`; raises :class:`PermanentStepError` naming an
        unknown, missing or invalid parameter."""
        if not self.params:
            return dict(params)
        shell = PipelineSpec(name=self.name, nodes=(), param_specs=parse_param_specs(self.params))
        try:
            return resolve_params(shell, params)
        except SpecError as exc:
            raise PermanentStepError(f"invalid DAG run conf: {exc}") from None

    def connection_registry(
        self, worker: ConnectionRegistry, params: Mapping[str, Any]
    ) -> ConnectionRegistry:
        """The worker's connections plus the pipeline's defaults (the worker's win)."""
        if not self.connections:
            return worker
        context = {"pipeline_dir": self.folder or os.getcwd(), "params": dict(params)}
        try:
            urls = render_config(self.connections, context)
        except TemplateRenderError as exc:
            raise PermanentStepError(f"connections.{exc.field}: {exc}") from None
        defaults = [
            Connection(name=name, url=str(url), origin=f"pipeline {self.name}")
            for name, url in urls.items()
        ]
        return worker.with_defaults(defaults)


_UNSAFE_PATH = re.compile(r"[^A-Za-z0-9_.\-]")

#: Airflow states that make a batchpilot run failed (upstream_failed only follows a failure).
FAILED_AIRFLOW_STATES = frozenset({"failed"})


def run_folder(root: Path | str, dag_id: str, run_id: str) -> Path | str:
    """The shared folder (or ``s3://`` URL) of one DAG run's artifacts (``run_id`` made
    file-name safe)."""
    dag_part, run_part = _UNSAFE_PATH.sub("_", dag_id), _UNSAFE_PATH.sub("_", run_id)
    if isinstance(root, str) and is_remote(root):
        return f"{root.rstrip('/')}/{dag_part}/{run_part}"
    return Path(root) / dag_part / run_part


def run_artifacts(settings: WorkerSettings, dag_id: str, run_id: str) -> ArtifactStore:
    """The artifacts of one DAG run under the worker's root; an ``s3://`` root is read
    and written through the S3 endpoint of the worker's AWS variables."""
    if isinstance(settings.artifacts_root, str):
        use_s3(settings.s3_endpoint)
    return ArtifactStore(run_folder(settings.artifacts_root, dag_id, run_id))


def xcom_payload(output: TaskOutput) -> dict[str, Any]:
    """What a task returns to XCom: artifact references and row counts only."""
    return output.to_xcom()


def inputs_from_xcom(
    upstream: Mapping[str, Mapping[str, Any] | None],
) -> tuple[dict[str, ArtifactRef], dict[str, dict[str, ArtifactRef]]]:
    """Turn upstream tasks' XCom payloads into step inputs (main and side outputs)."""
    outputs = {task_id: TaskOutput.from_xcom(payload) for task_id, payload in upstream.items()}
    return upstream_inputs(upstream, outputs)


def worker_context(
    *,
    pipeline: PipelineInfo,
    nodes: tuple[NodeSpec, ...],
    params: Mapping[str, Any],
    run_id: str,
    ds: str,
    artifacts: ArtifactStore,
    connections: ConnectionRegistry,
) -> RunContext:
    """The run as an Airflow task sees it: no state store (Airflow keeps the state), the
    run's folder in the shared artifacts root, the worker's connections plus the
    pipeline's defaults; the DAG run's params are checked against the declarations.
    Raises :class:`PermanentStepError` for params that do not fit or defaults that do not
    render."""
    params = pipeline.checked_params(params)
    registry = pipeline.connection_registry(connections, params)
    shell = PipelineSpec(name=pipeline.name, nodes=nodes, params=dict(params))
    return RunContext.create(
        shell,
        run_id=run_id,
        params=params,
        ds=ds,
        settings=Settings(home=artifacts.root, connections=registry),
        registry=default_registry(),
        run_dir=artifacts.root,
        pipeline_dir=pipeline.folder,
    )


def run_node(
    *,
    pipeline: PipelineInfo,
    node: NodeSpec,
    params: Mapping[str, Any],
    run_id: str,
    ds: str,
    attempt: int,
    upstream: Mapping[str, Mapping[str, Any] | None],
    artifacts: ArtifactStore,
    connections: ConnectionRegistry,
    log: logging.Logger,
) -> dict[str, Any]:
    """Run one attempt of the node's step on the engine's attempt path (Airflow retries
    it, per the DAG's retry arguments) and return the XCom.

    Raises :class:`PermanentStepError` for a config that is invalid once
    rendered (retrying cannot fix it) and whatever the step raised otherwise.
    """
    run = worker_context(
        pipeline=pipeline,
        nodes=(node,),
        params=params,
        run_id=run_id,
        ds=ds,
        artifacts=artifacts,
        connections=connections,
    )
    inputs, side = inputs_from_xcom(upstream)
    plan = AttemptPlan(
        node=node, number=attempt, artifacts=artifacts, inputs=inputs, side_inputs=side
    )
    handle = AttemptHandle(node.id, attempt, log_path=run.log_path(node.id, attempt))
    outcome = run_attempt(run, plan, handle, log=log)
    if outcome.error is not None:
        raise outcome.error
    output = outcome.output or TaskOutput()
    payload = xcom_payload(output)
    log.info("output: %s", output.artifact.path if output.artifact else None)
    return payload


def action_from_document(document: Mapping[str, Any]) -> ActionSpec:
    """Rebuild an :class:`ActionSpec` from the form the exporter writes into the DAG."""
    return ActionSpec(
        type=str(document["type"]),
        config=dict(document.get("config") or {}),
        retry=RetryPolicy(
            retries=int(document.get("retries", 0)),
            retry_delay_s=float(document.get("retry_delay", 1.0)),
            backoff=RetryBackoff(document.get("retry_backoff", RetryBackoff.EXPONENTIAL.value)),
        ),
        timeout_s=document.get("timeout"),
    )


def run_action(
    *,
    pipeline: PipelineInfo,
    action: ActionSpec,
    action_id: str,
    params: Mapping[str, Any],
    run_id: str,
    ds: str,
    artifacts: ArtifactStore,
    connections: ConnectionRegistry,
    log: logging.Logger,
    retry_in_process: bool,
) -> TaskOutput:
    """Run a compensation or callback step on the engine's action path; with
    ``retry_in_process`` apply its retry policy here (callbacks, which Airflow never
    retries), else run one attempt and leave retrying to Airflow. Raises what the
    last attempt raised."""
    node = action_node(action, node_id=action_id)
    run = worker_context(
        pipeline=pipeline,
        nodes=(node,),
        params=params,
        run_id=run_id,
        ds=ds,
        artifacts=artifacts,
        connections=connections,
    )
    outcome = run_engine_action(
        run, action, task_id=action_id, log_name=action_id, retries=retry_in_process, log=log
    )
    if not outcome.succeeded:
        raise outcome.failure or StepError(outcome.error or f"{action_id} failed")
    return outcome.output or TaskOutput()


def failed_tasks(
    states: Mapping[str, str | None], node_ids: list[str] | tuple[str, ...]
) -> list[str]:
    """The pipeline tasks that failed, in pipeline order, given Airflow's task states."""
    return [n for n in node_ids if states.get(n) in FAILED_AIRFLOW_STATES]


def compensation_skip_reason(
    states: Mapping[str, str | None], node_ids: list[str] | tuple[str, ...], target: str
) -> str | None:
    """Why the compensation of ``target`` must not run, or None when it must.

    It runs only when the run failed (some pipeline task failed) and
    ``target`` itself succeeded: a task that never ran has nothing to undo.
    """
    if not failed_tasks(states, node_ids):
        return "the run did not fail: nothing to compensate"
    state = states.get(target)
    if state != "success":
        return f"'{target}' did not succeed (it is {state or 'not run'}): nothing to undo"
    return None
