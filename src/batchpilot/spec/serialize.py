"""Turn a :class:`PipelineSpec` back into the file format (stored with each run)."""

from __future__ import annotations

from typing import Any

from batchpilot.spec.model import ActionSpec, CompensationMode, PipelineSpec
from batchpilot.spec.monitoring import MonitoringSpec
from batchpilot.spec.params import param_specs_of


def action_to_document(action: ActionSpec) -> dict[str, Any]:
    """The file form of a compensation or callback."""
    item: dict[str, Any] = {
        "type": action.type,
        "config": to_jsonable(action.config),
        "retries": action.retry.retries,
        "retry_delay": action.retry.retry_delay_s,
        "retry_backoff": action.retry.backoff.value,
    }
    if action.timeout_s is not None:
        item["timeout"] = action.timeout_s
    return item


def spec_to_document(spec: PipelineSpec) -> dict[str, Any]:
    """Return a JSON-able mapping that :func:`build_pipeline` parses into an equal spec.

    Callables given directly in Python configs are written as ``module:qualname``.
    """
    nodes = []
    for node in spec.nodes:
        item: dict[str, Any] = {
            "id": node.id,
            "type": node.type,
            "config": to_jsonable(node.config),
            "depends_on": list(node.upstream),
            "retries": node.retry.retries,
            "retry_delay": node.retry.retry_delay_s,
            "retry_backoff": node.retry.backoff.value,
            "max_retry_delay": node.retry.max_retry_delay_s,
            "retry_jitter": node.retry.jitter,
            "trigger_rule": node.trigger_rule.value,
        }
        if node.timeout_s is not None:
            item["timeout"] = node.timeout_s
        if node.description:
            item["description"] = node.description
        if node.compensate:
            item["compensate"] = action_to_document(node.compensate)
        for hook in ("on_success", "on_failure", "on_retry"):
            actions = getattr(node, hook)
            if actions:
                item[hook] = [action_to_document(a) for a in actions]
        if node.transaction:
            item["transaction"] = node.transaction
        node_monitoring = spec.monitoring.node_document(node.id)
        if node_monitoring:
            item["monitoring"] = node_monitoring
        nodes.append(item)
    document: dict[str, Any] = {
        "name": spec.name,
        "params": to_jsonable({n: p.to_document() for n, p in param_specs_of(spec).items()}),
        "nodes": nodes,
    }
    if spec.connections:
        document["connections"] = dict(spec.connections)
    if spec.compensation is not CompensationMode.AUTO:
        document["compensation"] = spec.compensation.value
    for hook in ("on_run_success", "on_run_failure"):
        actions = getattr(spec, hook)
        if actions:
            document[hook] = [action_to_document(a) for a in actions]
    for key in ("description", "max_workers"):
        value = getattr(spec, key)
        if value is not None:
            document[key] = value
    if spec.schedule is not None:
        document["schedule"] = spec.schedule.to_document()
    if spec.triggers:
        document["triggers"] = [t.to_document() for t in spec.triggers]
    if spec.monitoring.to_document() != MonitoringSpec().to_document():
        document["monitoring"] = spec.monitoring.to_document()
    if spec.notify is not None:
        document["notify"] = {rule: list(names) for rule, names in spec.notify.items()}
    return document


def to_jsonable(value: Any) -> Any:
    """Return ``value`` with callables as ``module:qualname`` and unknown objects as text."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if callable(value):
        module = getattr(value, "__module__", "?")
        return f"{module}:{getattr(value, '__qualname__', repr(value))}"
    return str(value)
