"""Checks a pipeline against the step catalogue and connections before any run exists."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.engine.building import action_node, build_step, template_context
from batchpilot.engine.group_plan import joinable_types, member_connection, plan_groups
from batchpilot.errors import ConnectionError, SpecError, SpecErrors
from batchpilot.settings import Settings
from batchpilot.spec.model import ActionSpec, NodeSpec, PipelineSpec
from batchpilot.spec.params import preview_params, resolve_params
from batchpilot.spec.templating import TemplateRenderError, render_config
from batchpilot.spec.triggers import TRIGGER_PARAM
from batchpilot.steps.base import Step
from batchpilot.steps.registry import StepRegistry

PREVIEW_RUN_ID = "preflight"

__all__ = [  # template_context: engine/transactions.py imports it from here
    "check_pipeline",
    "merged_params",
    "template_context",
    "with_pipeline_connections",
]


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
    """The pipeline's default params updated with a new run's own, checked against their
    declarations (see :func:`resolve_params`); raises :class:`SpecErrors`. The trigger
    payload's name (``TRIGGER_PARAM``) is refused: only the scheduler records it."""
    if TRIGGER_PARAM in overrides:
        raise SpecErrors(
            [
                SpecError(
                    f"parameter {TRIGGER_PARAM!r} is reserved for the trigger that starts a "
                    "run; pick another name",
                    path=spec.source_path,
                    field=f"params.{TRIGGER_PARAM}",
                )
            ]
        )
    return resolve_params(spec, overrides)


def recorded_params(spec: PipelineSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded run's params checked again against the pipeline (which may have changed
    since); the trigger payload the scheduler recorded (``TRIGGER_PARAM``) is kept as is."""
    resolved = resolve_params(spec, {k: v for k, v in params.items() if k != TRIGGER_PARAM})
    if TRIGGER_PARAM in params:
        resolved[TRIGGER_PARAM] = params[TRIGGER_PARAM]
    return resolved


def check_pipeline(
    spec: PipelineSpec,
    registry: StepRegistry,
    connections: ConnectionRegistry | None,
    *,
    params: Mapping[str, Any] | None = None,
    ds: str = "2000-01-01",
    output_roots: Sequence[Path] | None = None,
) -> None:
    """Check every node's type, config and connections; raises :class:`SpecErrors`.

    Configs are rendered with the run's params (or the defaults) so a missing
    parameter is found now rather than mid-run. ``connections=None`` skips the
    connection check; ``output_roots=None`` skips the check of output paths.
    """
    errors: list[SpecError] = []
    run_params = preview_params(spec) if params is None else recorded_params(spec, params)
    path = spec.source_path
    member_connections: dict[str, str | None] = {}
    for node in spec.nodes:
        context = template_context(
            spec, params=run_params, run_id=PREVIEW_RUN_ID, ds=ds, task_id=node.id
        )
        try:
            step = build_step(node, registry, context, path=path, output_roots=output_roots)
        except SpecErrors as exc:
            errors.extend(exc.errors)
            continue
        except SpecError as exc:
            errors.append(exc)
            continue
        errors.extend(_check_actions(spec, node, step, registry, context))
        if node.transaction:
            member_connections[node.id] = member_connection(step)
        steps_to_check = [(step, "config")]
        steps_to_check += _built_actions(spec, node, registry, context)
        if connections is None:
            continue
        for checked, prefix in steps_to_check:
            errors.extend(_check_connections(spec, node, checked, prefix, connections))
    errors.extend(plan_groups(spec, member_connections, joinable_types(spec, registry))[1])
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
