"""``python``: call any Python function, and ``transform.python``: a function on a DataFrame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
from pydantic import Field, field_validator

from batchpilot.artifacts import read_table
from batchpilot.errors import StepError
from batchpilot.steps.base import Step, StepConfig, StepContext, StepResult
from batchpilot.steps.callables import call_with_known_arguments, resolve_callable, to_arrow


class PythonConfig(StepConfig):
    callable: Any
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("callable")
    @classmethod
    def _resolvable(cls, value: Any) -> Callable[..., Any]:
        return resolve_callable(value)


class PythonStep(Step[PythonConfig]):
    """Calls ``callable`` with the arguments it names among: ``context``, ``inputs``
    (upstream tables by node id), ``params``, ``run_id``, ``task_id``, ``attempt``,
    ``log`` and ``config.kwargs``; as a callback also ``event`` (and ``error``,
    ``log_path``…); as a compensation also ``original`` and ``metadata``.

    A returned table (Arrow, polars, pandas, list of dicts) becomes the task's
    output; a returned int is its row count; a returned dict its metadata.
    """

    type_name = "python"
    Config = PythonConfig

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        inputs = _LazyTables(ctx)
        available: dict[str, Any] = {
            "context": ctx,
            "ctx": ctx,
            "inputs": inputs,
            "params": dict(ctx.params),
            "run_id": ctx.run_id,
            "log": ctx.log,
            "task_id": ctx.task_id,
            "attempt": ctx.attempt,
        }
        if ctx.event is not None:  # a callback: its event, and each field by name
            # the event's own task_id, attempt, error… describe what caused the callback
            available.update({k: v for k, v in ctx.event.items() if k != "event"})
            available["event"] = dict(ctx.event)
        if ctx.original is not None:  # a compensation: what the original task did
            available["original"] = dict(ctx.original)
            available["metadata"] = dict(ctx.original.get("metadata") or {})
        available.update(config.kwargs)
        value = call_with_known_arguments(config.callable, available)
        rows_in = sum(ref.rows for ref in ctx.inputs.values()) if ctx.inputs else None
        table = to_arrow(value)
        if table is not None:
            ref = ctx.write_output(table)
            return StepResult(output=ref, rows_in=rows_in, rows_out=ref.rows)
        if isinstance(value, StepResult):
            return value
        if isinstance(value, bool) or value is None:
            return StepResult(rows_in=rows_in)
        if isinstance(value, int):
            return StepResult(rows_in=rows_in, rows_out=value)
        if isinstance(value, dict):
            return StepResult(rows_in=rows_in, metadata=value)
        return StepResult(rows_in=rows_in, metadata={"result": repr(value)[:200]})


class _LazyTables(dict):
    """Upstream outputs as Arrow tables, memory-mapped on first access."""

    def __init__(self, ctx: StepContext) -> None:
        super().__init__()
        self._ctx = ctx

    def __missing__(self, key: str) -> Any:
        if key not in self._ctx.inputs:
            raise KeyError(
                f"no upstream output named '{key}' (have: {', '.join(self._ctx.inputs)})"
            )
        table = read_table(self._ctx.inputs[key])
        self[key] = table
        return table

    def keys(self):  # type: ignore[override]
        return self._ctx.inputs.keys()

    def __iter__(self):  # type: ignore[override]
        return iter(self._ctx.inputs)

    def __len__(self) -> int:
        return len(self._ctx.inputs)

    def __contains__(self, key: object) -> bool:
        return key in self._ctx.inputs

    def items(self):  # type: ignore[override]
        return [(k, self[k]) for k in self._ctx.inputs]

    def values(self):  # type: ignore[override]
        return [self[k] for k in self._ctx.inputs]


class TransformPythonConfig(PythonConfig):
    pass


class TransformPythonStep(Step[TransformPythonConfig]):
    """Calls ``callable(df)`` with the upstream output as a polars DataFrame; the
    DataFrame it returns is the output. Extra ``kwargs`` are passed by name."""

    compensable = False

    type_name = "transform.python"
    Config = TransformPythonConfig

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        table = ctx.input_table()
        df = pl.from_arrow(table)
        result = config.callable(df, **config.kwargs)
        out = to_arrow(result)
        if out is None:
            raise StepError(
                f"transform.python: the function returned {type(result).__name__}, "
                "expected a DataFrame"
            )
        ref = ctx.write_output(out)
        return StepResult(output=ref, rows_in=table.num_rows, rows_out=ref.rows)


STEPS = (PythonStep, TransformPythonStep)
