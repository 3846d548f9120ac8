"""Turn a :class:`PipelineSpec` back into the file format (stored with each run)."""

from __future__ import annotations

from typing import Any

from batchpilot.spec.model import PipelineSpec


def spec_to_document(spec: PipelineSpec) -> dict[str, Any]:
    """Return a JSON-able mapping that :func:`build_pipeline` parses into an equal spec.

    Callables given directly in Python configs are written as ``module:qualname``.
    """
    nodes = []
    for node in spec.nodes:
        item: dict[str, Any] = {
            "id": node.id,
            "type": node.type,
            "config": _jsonable(node.config),
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
        nodes.append(item)
    document: dict[str, Any] = {"name": spec.name, "params": _jsonable(spec.params), "nodes": nodes}
    for key in ("description", "schedule", "max_workers"):
        value = getattr(spec, key)
        if value is not None:
            document[key] = value
    return document


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if callable(value):
        module = getattr(value, "__module__", "?")
        return f"{module}:{getattr(value, '__qualname__', repr(value))}"
    return str(value)
