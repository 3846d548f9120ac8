"""Checks a pipeline against the step catalogue and connections before any run exists,
and builds each task's step with its rendered config."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from batchpilot.artifacts import ArtifactStore
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.engine.transactions import plan_groups
from batchpilot.errors import ConnectionError, SpecError, SpecErrors
from batchpilot.settings import Settings
from batchpilot.spec.model import ActionSpec, NodeSpec, PipelineSpec
from batchpilot.spec.templating import TemplateRenderError, render_config
from batchpilot.steps.base import Step, StepContext
from batchpilot.steps.registry import StepRegistry

PREVIEW_RUN_ID = "preflight"


def template_context(
    spec: PipelineSpec, *, params: Mapping[str, Any], run_id: str, ds: str, task_id: str = ""
) -> dict[str, Any]:
    """Variables a config template sees: params, pipeline_dir, run_id, ds, ds_nodash,
    pipeline, task_id."""
    return {
        "params": dict(params),
        "pipeline_dir": spec.folder or os.getcwd(),
        "run_id": run_id,
        "ds": ds,
        "ds_nodash": ds.replace("-", ""),
        "pipeline": spec.name,
        "task_id": task_id,
    }


def prepare_attempt(
    spec: PipelineSpec,
    node: NodeSpec,
    registry: StepRegistry,
    *,
    run_id: str,
    params: Mapping[str, Any],
    ds: str,
    attempt: int,
    artifacts: ArtifactStore,
    connections: ConnectionRegistry,
    cancel_event: Any,
    template_extra: Mapping[str, Any] | None = None,
) -> tuple[Step, StepContext]:
    """Render ``node``'s config for one attempt and build its step and context.

    The context has no inputs and no log yet: the caller adds what its kind of
    attempt sees. Raises :class:`SpecError` if the rendered config is invalid.
    """
    context = template_context(spec, params=params, run_id=run_id, ds=ds, task_id=node.id)
    context.update(template_extra or {})
    step = build_step(node, registry, context, path=spec.source_path)
    ctx = StepContext(
        pipeline=spec.name,
        run_id=run_id,
        task_id=node.id,
        attempt=attempt,
        params=params,
        inputs={},
        artifacts=artifacts,
        connections=connections,
        log=None,  # type: ignore[arg-type] - set by the attempt's handle to its log
        cancel_event=cancel_event,
    )
    return step, ctx


def action_node(action: ActionSpec, *, node_id: str) -> NodeSpec:
    """An action (compensation, callback) as a node, built and checked like any task."""
    return NodeSpec(
        id=node_id,
        type=action.type,
        config=action.config,
        retry=action.retry,
        timeout_s=action.timeout_s,
    )


def with_pipeline_connections(settings: Settings, spec: PipelineSpec) -> Settings:
    """Settings whose connections include the pipeline's defaults (``connections:``);
    a connection the environment or the connections file defines wins."""
    if not spec.connections:
        return settings
    context = {"pipeline_dir": spec.folder or os.getcwd(), "params": dict(spec.params)}
    try:
        urls = render_config(spec.connections, context)
    except TemplateRenderError as exc:
        raise SpecError(str(exc), path=spec.source_path, field=f"connections.{exc.field}") from None
    defaults = [
        Connection(name=name, url=str(url), origin=f"{spec.source_path or 'pipeline'}")
        for name, url in urls.items()
    ]
    return replace(settings, connections=settings.connections.with_defaults(defaults))


def merged_params(spec: PipelineSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline's default params updated with the run's own."""
    return {**spec.params, **overrides}


def build_step(
    node: NodeSpec, registry: StepRegistry, context: Mapping[str, Any], *, path: str | None = None
) -> Step:
    """Render the node's config and instantiate its step.

    Raises :class:`SpecError` naming the node and field for an unknown type,
    a template error or an invalid config value.
    """
    try:
        step_class = registry.get(node.type)
    except SpecError as exc:
        raise SpecError(
            exc.reason, path=path, node_id=node.id, field="type", line=node.line
        ) from None
    try:
        config = render_config(node.config, context)
    except TemplateRenderError as exc:
        raise SpecError(
            str(exc), path=path, node_id=node.id, field=f"config.{exc.field}", line=node.line
        ) from None
    try:
        model = step_class.Config.model_validate(config)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            field = ".".join(str(p) for p in ("config", *err["loc"]))
            message = (
                "required field is missing"
                if err["type"] == "missing"
                else ("unknown field" if err["type"] == "extra_forbidden" else str(err["msg"]))
            )
            errors.append(
                SpecError(
                    message.removeprefix("Value error, "),
                    path=path,
                    node_id=node.id,
                    field=field,
                    line=node.line,
                )
            )
        raise (errors[0] if len(errors) == 1 else SpecErrors(errors)) from None
    return step_class(model)


def check_pipeline(
    spec: PipelineSpec,
    registry: StepRegistry,
    connections: ConnectionRegistry | None,
    *,
    params: Mapping[str, Any] | None = None,
    ds: str = "2000-01-01",
) -> None:
    """Check every node's type, config and connections; raises :class:`SpecErrors`.

    Configs are rendered with the run's params (or the defaults) so a missing
    parameter is found now rather than mid-run. ``connections=None`` skips the
    connection check.
    """
    errors: list[SpecError] = []
    run_params = merged_params(spec, params or {})
    path = spec.source_path
    member_connections: dict[str, str | None] = {}
    for node in spec.nodes:
        context = template_context(
            spec, params=run_params, run_id=PREVIEW_RUN_ID, ds=ds, task_id=node.id
        )
        try:
            step = build_step(node, registry, context, path=path)
        except SpecErrors as exc:
            errors.extend(exc.errors)
            continue
        except SpecError as exc:
            errors.append(exc)
            continue
        errors.extend(_check_actions(spec, node, step, registry, context))
        if node.transaction:
            member_connections[node.id] = getattr(step.config, "connection", None)
        steps_to_check = [(step, "config")]
        steps_to_check += _built_actions(spec, node, registry, context)
        if connections is None:
            continue
        for checked, prefix in steps_to_check:
            errors.extend(_check_connections(spec, node, checked, prefix, connections))
    errors.extend(plan_groups(spec, member_connections)[1])
    for field, actions in (
        ("on_run_success", spec.on_run_success),
        ("on_run_failure", spec.on_run_failure),
    ):
        for i, action in enumerate(actions):
            context = template_context(spec, params=run_params, run_id=PREVIEW_RUN_ID, ds=ds)
            try:
                build_step(action_node(action, node_id="run"), registry, context, path=path)
            except SpecError as exc:
                errors.append(
                    SpecError(exc.reason, path=path, field=f"{field}[{i}].{exc.field or 'type'}")
                )
    if errors:
        raise SpecErrors(errors)


def _check_actions(
    spec: PipelineSpec,
    node: NodeSpec,
    step: Step,
    registry: StepRegistry,
    context: Mapping[str, Any],
) -> list[SpecError]:
    """A compensation on a step with nothing to undo, or an action that cannot be built."""
    errors = []
    if node.compensate is not None and not step.compensable:
        errors.append(
            SpecError(
                f"a {node.type} step changes nothing outside the run, so there is nothing to "
                "compensate; put 'compensate' on the step that writes (a load, sql or python)",
                path=spec.source_path,
                node_id=node.id,
                field="compensate",
                line=node.line,
            )
        )
    for field, action in _node_actions(node):
        try:
            build_step(
                action_node(action, node_id=node.id),
                registry,
                {**context, "task": {}, "event": {}},
                path=spec.source_path,
            )
        except SpecErrors as exc:
            for err in exc.errors:
                errors.append(_action_error(spec, node, field, err))
        except SpecError as exc:
            errors.append(_action_error(spec, node, field, exc))
    return errors


def _node_actions(node: NodeSpec) -> list[tuple[str, ActionSpec]]:
    found = [("compensate", node.compensate)] if node.compensate else []
    for hook in ("on_success", "on_failure", "on_retry"):
        found += [(f"{hook}[{i}]", a) for i, a in enumerate(getattr(node, hook))]
    return found


def _built_actions(
    spec: PipelineSpec, node: NodeSpec, registry: StepRegistry, context: Mapping[str, Any]
) -> list[tuple[Step, str]]:
    built = []
    for field, action in _node_actions(node):
        try:
            step = build_step(
                action_node(action, node_id=node.id),
                registry,
                {**context, "task": {}, "event": {}},
                path=spec.source_path,
            )
        except SpecError:
            continue  # reported by _check_actions
        built.append((step, f"{field}.config"))
    return built


def _action_error(spec: PipelineSpec, node: NodeSpec, field: str, err: SpecError) -> SpecError:
    inner = err.field or "type"
    return SpecError(
        err.reason, path=spec.source_path, node_id=node.id, field=f"{field}.{inner}", line=node.line
    )


def _check_connections(
    spec: PipelineSpec, node: NodeSpec, step: Step, prefix: str, connections: ConnectionRegistry
) -> list[SpecError]:
    errors = []
    path = spec.source_path
    for field in step.connection_fields:
        name = getattr(step.config, field, None)
        if isinstance(name, str) and name not in connections:
            known = ", ".join(c.name for c in connections) or "none defined"
            errors.append(
                SpecError(
                    f"unknown connection '{name}' (known: {known}); define it with "
                    f"BATCHPILOT_CONN_{name.upper()}=<url> or in connections.yaml",
                    path=path,
                    node_id=node.id,
                    field=f"{prefix}.{field}",
                    line=node.line,
                )
            )
        elif isinstance(name, str):
            try:
                connections.get(name).check()
            except ConnectionError as exc:
                errors.append(
                    SpecError(
                        str(exc),
                        path=path,
                        node_id=node.id,
                        field=f"{prefix}.{field}",
                        line=node.line,
                    )
                )
    return errors
