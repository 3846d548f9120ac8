"""Building a node's step: its config rendered with the run's template variables,
then validated by the step type's config model."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from batchpilot.errors import SpecError, SpecErrors, TemplateRenderError
from batchpilot.spec.model import ActionSpec, NodeSpec, PipelineSpec
from batchpilot.spec.templating import render_config
from batchpilot.spec.triggers import NO_TRIGGER, TRIGGER_PARAM
from batchpilot.steps.base import Step
from batchpilot.steps.registry import StepRegistry


def template_context(
    spec: PipelineSpec,
    *,
    params: Mapping[str, Any],
    run_id: str,
    ds: str,
    task_id: str = "",
    pipeline_dir: str | None = None,
) -> dict[str, Any]:
    """Variables a config template sees: params, pipeline_dir, run_id, ds, ds_nodash,
    pipeline, task_id, trigger (what a trigger recorded in the run's params)."""
    trigger = params.get(TRIGGER_PARAM)
    return {
        "params": {k: v for k, v in params.items() if k != TRIGGER_PARAM},
        "trigger": dict(trigger) if isinstance(trigger, Mapping) else dict(NO_TRIGGER),
        "pipeline_dir": pipeline_dir or spec.folder or os.getcwd(),
        "run_id": run_id,
        "ds": ds,
        "ds_nodash": ds.replace("-", ""),
        "pipeline": spec.name,
        "task_id": task_id,
    }


def action_node(action: ActionSpec, *, node_id: str) -> NodeSpec:
    """An action (compensation, callback) as a node, built and checked like any task."""
    return NodeSpec(
        id=node_id,
        type=action.type,
        config=action.config,
        retry=action.retry,
        timeout_s=action.timeout_s,
    )


def build_step(
    node: NodeSpec,
    registry: StepRegistry,
    context: Mapping[str, Any],
    *,
    path: str | None = None,
    output_roots: Sequence[Path] | None = None,
) -> Step:
    """Render the node's config and instantiate its step.

    SQL fields render their values as SQL literals and output paths must stay under
    ``output_roots`` (see :func:`render_config`; ``None`` skips the path check).
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
        config = render_config(
            node.config, context, config_model=step_class.Config, output_roots=output_roots
        )
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
