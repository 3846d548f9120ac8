"""Jinja2 rendering of node configs: ``{{ params.x }}``, ``{{ run_id }}``, ``{{ ds }}``."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from batchpilot.errors import TemplateRenderError

__all__ = ["TemplateRenderError", "render_config"]

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment


@cache
def _environment() -> SandboxedEnvironment:
    # imported on first use: a pipeline without templates never pays for Jinja2
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)


def render_config(config: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Render every string in ``config`` that holds a Jinja2 expression.

    Non-string values (numbers, callables) pass through untouched. Raises
    :class:`TemplateRenderError` naming the field whose template failed.
    """
    return {key: _render(value, context, str(key)) for key, value in config.items()}


def _render(value: Any, context: Mapping[str, Any], field: str) -> Any:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        from jinja2 import TemplateError

        try:
            return _environment().from_string(value).render(context)
        except TemplateError as exc:
            raise TemplateRenderError(field, f"template error: {exc}") from None
    if isinstance(value, Mapping):
        return {k: _render(v, context, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render(v, context, f"{field}[{i}]") for i, v in enumerate(value)]
    return value
