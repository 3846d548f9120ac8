"""Running a node's step, a compensation or a callback inside an Airflow task.

Nothing here imports Airflow: the operators in :mod:`batchpilot.airflow.operator`
translate Airflow's context into these calls and the results back into XCom.
A task's XCom is :func:`xcom_payload`: the artifact reference and row counts,
never rows.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchpilot.artifacts import ArtifactRef, ArtifactStore
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.engine.preflight import build_step, template_context
from batchpilot.engine.retry import retry_delay, should_retry
from batchpilot.errors import PermanentStepError, SpecError
from batchpilot.spec.model import ActionSpec, NodeSpec, PipelineSpec, RetryBackoff, RetryPolicy
from batchpilot.spec.params import parse_param_specs, resolve_params
from batchpilot.spec.templating import TemplateRenderError, render_config
from batchpilot.steps.base import StepContext, StepResult
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


def run_folder(root: Path, dag_id: str, run_id: str) -> Path:
    """The shared folder of one DAG run's artifacts (``run_id`` made file-name safe)."""
    return root / _UNSAFE_PATH.sub("_", dag_id) / _UNSAFE_PATH.sub("_", run_id)


def xcom_payload(result: StepResult) -> dict[str, Any]:
    """What a task returns to XCom: artifact references and row counts only."""
    return {
        "artifact": result.output.to_json() if result.output else None,
        "side_outputs": {k: v.to_json() for k, v in sorted(result.side_outputs.items())},
        "rows_in": result.rows_in,
        "rows_out": result.rows_out,
        "rows_rejected": result.rows_rejected,
    }


def inputs_from_xcom(
    upstream: Mapping[str, Mapping[str, Any] | None],
) -> tuple[dict[str, ArtifactRef], dict[str, dict[str, ArtifactRef]]]:
    """Turn upstream tasks' XCom payloads into step inputs (main and side outputs)."""
    inputs: dict[str, ArtifactRef] = {}
    side: dict[str, dict[str, ArtifactRef]] = {}
    for task_id, payload in upstream.items():
        if not payload:
            continue  # skipped upstream, or a task without output
        if payload.get("artifact"):
            inputs[task_id] = ArtifactRef.from_json(payload["artifact"])
        if payload.get("side_outputs"):
            side[task_id] = {
                k: ArtifactRef.from_json(v) for k, v in payload["side_outputs"].items()
            }
    return inputs, side


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
    """Render the node's config with batchpilot's templating, run its step, return the XCom.

    Raises :class:`PermanentStepError` for a config that is invalid once
    rendered (retrying cannot fix it) and whatever the step raises otherwise.
    """
    inputs, side = inputs_from_xcom(upstream)
    result = _run_step(
        pipeline=pipeline,
        node=node,
        params=params,
        run_id=run_id,
        ds=ds,
        attempt=attempt,
        inputs=inputs,
        side_inputs=side,
        artifacts=artifacts,
        connections=connections,
        log=log,
    )
    payload = xcom_payload(result)
    log.info(
        "succeeded: rows_in=%s rows_out=%s output=%s",
        result.rows_in,
        result.rows_out,
        payload["artifact"]["path"] if payload["artifact"] else None,
    )
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
) -> StepResult:
    """Run a compensation or callback step; with ``retry_in_process`` apply its retry policy here
    (callbacks, which Airflow never retries), else leave retrying to Airflow."""
    node = NodeSpec(id=action_id, type=action.type, config=dict(action.config))
    attempt = 1
    while True:
        try:
            return _run_step(
                pipeline=pipeline,
                node=node,
                params=params,
                run_id=run_id,
                ds=ds,
                attempt=attempt,
                inputs={},
                side_inputs={},
                artifacts=artifacts,
                connections=connections,
                log=log,
            )
        except Exception as exc:
            if not retry_in_process or not should_retry(action.retry, attempt, exc):
                raise
            delay = retry_delay(action.retry, attempt)
            log.warning(
                "%s attempt %d failed (%s); retrying in %.1fs", action_id, attempt, exc, delay
            )
            time.sleep(delay)
            attempt += 1


def _run_step(
    *,
    pipeline: PipelineInfo,
    node: NodeSpec,
    params: Mapping[str, Any],
    run_id: str,
    ds: str,
    attempt: int,
    inputs: dict[str, ArtifactRef],
    side_inputs: dict[str, dict[str, ArtifactRef]],
    artifacts: ArtifactStore,
    connections: ConnectionRegistry,
    log: logging.Logger,
) -> StepResult:
    params = pipeline.checked_params(params)
    shell = PipelineSpec(name=pipeline.name, nodes=(node,), params=dict(params))
    context = template_context(shell, params=params, run_id=run_id, ds=ds, task_id=node.id)
    context["pipeline_dir"] = pipeline.folder or os.getcwd()
    log.info("run %s, task %s (%s), attempt %d", run_id, node.id, node.type, attempt)
    try:
        step = build_step(node, default_registry(), context)
    except SpecError as exc:
        raise PermanentStepError(str(exc)) from None
    ctx = StepContext(
        pipeline=pipeline.name,
        run_id=run_id,
        task_id=node.id,
        attempt=attempt,
        params=dict(params),
        inputs=inputs,
        extra_inputs=side_inputs,
        artifacts=artifacts,
        connections=pipeline.connection_registry(connections, params),
        log=log,
    )
    return step.run(ctx)


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
