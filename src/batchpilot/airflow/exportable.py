"""What Airflow cannot express, refused at export with a :class:`SpecError` naming the
node and the feature, never dropped: ``transaction`` groups (one database transaction
across several tasks), ``compensation: manual`` (Airflow has no "run the saga on
command"), callables that workers cannot import by module path (lambdas, functions
defined inside the pipeline file), a timeout on a callback, and config values that are
not plain data."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec.model import ActionSpec, CompensationMode, NodeSpec, PipelineSpec
from batchpilot.steps.callables import callable_name

_CALLABLE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_UNIMPORTABLE_MODULES = frozenset({"__main__", "__batchpilot_pipeline__", "?", ""})


def check_exportable(spec: PipelineSpec) -> None:
    """Raise :class:`SpecErrors` listing every feature of ``spec`` Airflow cannot express."""
    errors = list(_refusals(spec))
    if errors:
        raise SpecErrors(errors)


def _refusals(spec: PipelineSpec) -> Iterator[SpecError]:
    path = spec.source_path
    if spec.compensation is CompensationMode.MANUAL:
        yield SpecError(
            "'compensation: manual' cannot be exported to Airflow: Airflow has no way to hold "
            "compensations until someone starts them; use 'auto' or run this pipeline locally",
            path=path,
            field="compensation",
        )
    for node in spec.nodes:
        if node.transaction:
            yield SpecError(
                f"transaction group '{node.transaction}' cannot be exported to Airflow: each "
                "Airflow task commits on its own, so an atomic group across tasks cannot hold; "
                "merge the statements into one sql node or run this pipeline locally",
                path=path,
                node_id=node.id,
                field="transaction",
                line=node.line,
            )
        yield from _value_refusals(node.config, spec, node, "config")
        if node.compensate is not None:
            yield from _value_refusals(node.compensate.config, spec, node, "compensate.config")
        for hook in ("on_success", "on_failure", "on_retry"):
            for index, action in enumerate(getattr(node, hook)):
                yield from _action_refusals(action, spec, node, f"{hook}[{index}]")
    for hook in ("on_run_success", "on_run_failure"):
        for index, action in enumerate(getattr(spec, hook)):
            yield from _action_refusals(action, spec, None, f"{hook}[{index}]")


def _action_refusals(
    action: ActionSpec, spec: PipelineSpec, node: NodeSpec | None, field: str
) -> Iterator[SpecError]:
    if action.timeout_s is not None:
        yield SpecError(
            "a timeout on a callback cannot be exported: Airflow runs callbacks without one; "
            "remove the timeout or make the callback a task",
            path=spec.source_path,
            node_id=node.id if node else None,
            field=f"{field}.timeout",
            line=node.line if node else None,
        )
    yield from _value_refusals(action.config, spec, node, f"{field}.config")


def _value_refusals(
    value: Any, spec: PipelineSpec, node: NodeSpec | None, field: str
) -> Iterator[SpecError]:
    def refuse(message: str, where: str) -> SpecError:
        return SpecError(
            message,
            path=spec.source_path,
            node_id=node.id if node else None,
            field=where,
            line=node.line if node else None,
        )

    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                yield refuse(f"config key {key!r} is not a string", field)
                continue
            yield from _value_refusals(item, spec, node, f"{field}.{key}")
            if key == "callable" and isinstance(item, str) and not _CALLABLE_REF.match(item):
                yield refuse(
                    f"{item!r} is not an importable 'module:function' reference, which is "
                    "how Airflow workers find the function",
                    f"{field}.{key}",
                )
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _value_refusals(item, spec, node, f"{field}[{index}]")
    elif value is None or isinstance(value, str | int | float | bool):
        return
    elif callable(value):
        name = callable_name(value)
        module, _, qualname = name.partition(":")
        if module in _UNIMPORTABLE_MODULES or "<" in qualname:
            where = (
                "defined in the pipeline file itself"
                if module in {"__batchpilot_pipeline__", "__main__"}
                else "not importable by module path"
            )
            yield refuse(
                f"the Python callable {name} is {where}, so Airflow workers cannot import it; "
                "define it as a top-level function in a module the workers can import",
                field,
            )
    else:
        yield refuse(
            f"a {type(value).__name__} value cannot be written into a DAG file; "
            "use plain data (strings, numbers, lists, mappings)",
            field,
        )


# -- writing the DAG ------------------------------------------------------------------------
