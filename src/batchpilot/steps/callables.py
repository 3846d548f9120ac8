"""Resolve ``module:function`` references and turn return values into step results."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from batchpilot.errors import StepError


def resolve_callable(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """Return the callable named by ``package.module:function`` (or ``ref`` itself).

    Raises ``ValueError`` with a message saying what could not be found.
    """
    if callable(ref):
        return ref
    if not isinstance(ref, str) or ":" not in ref:
        raise ValueError(f"expected 'module:function', got {ref!r}")
    module_name, _, attr_path = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module '{module_name}' of {ref!r}: {exc}") from None
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise ValueError(f"module '{module_name}' has no attribute '{attr_path}'") from None
    if not callable(target):
        raise ValueError(f"{ref!r} is not callable")
    return target


def callable_name(fn: Callable[..., Any] | str) -> str:
    """A readable ``module:qualname`` for a callable (as stored in run specs)."""
    if isinstance(fn, str):
        return fn
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}:{qualname}"


def call_with_known_arguments(fn: Callable[..., Any], available: dict[str, Any]) -> Any:
    """Call ``fn`` passing only the arguments it declares, by name, from ``available``.

    A function with ``**kwargs`` receives everything. Raises :class:`StepError`
    when it requires an argument that is not available.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn()
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return fn(**available)
    kwargs = {}
    for p in params:
        if p.name in available:
            kwargs[p.name] = available[p.name]
        elif p.default is inspect.Parameter.empty and p.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
        ):
            names = ", ".join(sorted(available))
            raise StepError(
                f"{callable_name(fn)} needs an argument '{p.name}' that batchpilot cannot "
                f"give it (available by name: {names})"
            )
    return fn(**kwargs)


def to_arrow(value: Any) -> pa.Table | None:
    """Convert a returned DataFrame-like value to an Arrow table (None if it is not one)."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    module = type(value).__module__.split(".")[0]
    if module == "polars":
        return value.to_arrow()
    if module == "pandas":
        return pa.Table.from_pandas(value, preserve_index=False)
    if module == "duckdb":
        return value.to_arrow_table()
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        return pa.Table.from_pylist(value)
    return None
