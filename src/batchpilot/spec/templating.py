"""Jinja2 rendering of node configs: ``{{ params.x }}``, ``{{ run_id }}``, ``{{ ds }}``.

A step's config model says how each field renders, with a marker in the
field's ``Annotated`` type:

- :class:`SqlTemplate`: the field holds SQL. Each expression becomes a quoted
  literal (``'it''s'``, ``42``, ``NULL``, ``('a', 'b')`` for a list), or, when it
  already stands inside quotes in the SQL (``'{{ ds }}'``), the escaped text
  without new quotes. ``| identifier`` writes a quoted name and
  ``| unsafe_raw_sql`` trusted SQL text verbatim.
- :class:`BindParams`: the field is the step's ``:name`` bind parameters; it also
  receives ``ds``, ``ds_nodash``, ``run_id``, ``pipeline``, ``task_id`` and every
  param by name (the step's own ``params`` win).
- :class:`OutputPath`: the field is a path the step writes; once rendered, it must
  resolve under an allowed output root (see :mod:`batchpilot.spec.output_paths`).

Every other string renders as plain text. Every rendered value is bounded by
:data:`MAX_RENDERED_CHARS`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchpilot.errors import TemplateRenderError
from batchpilot.spec.output_paths import OutputPathError, check_output_path
from batchpilot.spec.sql_literals import (
    RawSql,
    SqlIdentifier,
    SqlValueError,
    locate_placeholders,
    sql_for_value,
)

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment
    from pydantic import BaseModel

#: the most characters one rendered config value may hold
MAX_RENDERED_CHARS = 1_000_000

#: run values every :class:`BindParams` field receives, by bind name
BUILTIN_BINDS = ("ds", "ds_nodash", "run_id", "pipeline", "task_id")

_COLLECTOR_KEY = "_batchpilot_sql_values"


@dataclass(frozen=True)
class SqlTemplate:
    """Marks a config field as SQL text: template values render as safe SQL.

    ``sqlalchemy_text``: the SQL runs through SQLAlchemy ``text()``, so a ``:word``
    inside a value is escaped to stay text rather than become a bind parameter.
    ``backslash_is_plain``: every engine the SQL runs on reads a backslash inside
    quotes as itself (DuckDB); otherwise a value holding one is refused, since
    MySQL would read it as an escape.
    """

    sqlalchemy_text: bool = False
    backslash_is_plain: bool = False


@dataclass(frozen=True)
class BindParams:
    """Marks a config field as the step's bind parameters (``:name`` in its SQL)."""


@dataclass(frozen=True)
class OutputPath:
    """Marks a config field as a path the step writes: it must stay under an output root."""


#: the marker for SQL a step runs through SQLAlchemy ``text()`` on any database
SQL_FOR_SQLALCHEMY = SqlTemplate(sqlalchemy_text=True)
#: the marker for SQL a step runs on its in-memory DuckDB
SQL_FOR_DUCKDB = SqlTemplate(backslash_is_plain=True)


class _RenderLimitExceeded(Exception):
    """Raised inside Jinja when a value outgrows :data:`MAX_RENDERED_CHARS`."""


class _SqlValues:
    """Collects the values of one SQL template's expressions (no public attributes:
    the sandbox keeps templates from touching it)."""

    def __init__(self) -> None:
        self._token = secrets.token_hex(8)
        self._values: list[Any] = []
        self._chars = 0

    def _placeholder_for(self, value: Any) -> str:
        from jinja2 import Undefined

        if isinstance(value, Undefined):  # fail now, inside the render that names the field
            value._fail_with_undefined_error()
        self._chars += _expanded_size(value)
        if self._chars > MAX_RENDERED_CHARS:
            raise _RenderLimitExceeded
        self._values.append(value)
        return f"BPSQL{self._token}V{len(self._values) - 1}X"

    def _pattern(self) -> re.Pattern[str]:
        return re.compile(f"BPSQL{self._token}V(\\d+)X", re.IGNORECASE)


def render_config(
    config: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    config_model: type[BaseModel] | None = None,
    output_roots: Sequence[Path] | None = None,
) -> dict[str, Any]:
    """Render every string in ``config`` that holds a Jinja2 expression.

    ``config_model``'s field markers (:class:`SqlTemplate`, :class:`BindParams`,
    :class:`OutputPath`) decide how each top-level field renders; without it every
    string renders as plain text. ``output_roots``: the folders an :class:`OutputPath`
    may resolve under besides ``context['pipeline_dir']``; ``None`` skips that check
    (the caller does not know the roots). Non-string values pass through untouched.
    Raises :class:`TemplateRenderError` naming the field that failed.
    """
    markers = field_markers(config_model)
    rendered: dict[str, Any] = {}
    for key, value in config.items():
        marker = markers.get(str(key))
        if isinstance(marker, SqlTemplate) and isinstance(value, str):
            rendered[key] = _render_sql(value, context, str(key), marker)
        else:
            rendered[key] = _render(value, context, str(key))
        if isinstance(marker, OutputPath) and output_roots is not None:
            _check_path(rendered[key], context, output_roots, str(key))
    for key, marker in markers.items():
        if isinstance(marker, BindParams):
            own = rendered.get(key) or {}
            if isinstance(own, Mapping):
                rendered[key] = {**run_binds(context), **own}
    return rendered


def field_markers(config_model: type[BaseModel] | None) -> dict[str, object]:
    """The rendering marker of each field of ``config_model`` that has one."""
    if config_model is None:
        return {}
    markers: dict[str, object] = {}
    for name, info in config_model.model_fields.items():
        for item in info.metadata:
            if isinstance(item, SqlTemplate | BindParams | OutputPath):
                markers[info.alias or name] = item
    return markers


def run_binds(context: Mapping[str, Any]) -> dict[str, Any]:
    """The bind parameters every SQL step gets: each param by name, then the run's values."""
    params = context.get("params") or {}
    binds = {str(k): v for k, v in params.items()} if isinstance(params, Mapping) else {}
    binds.update({name: context[name] for name in BUILTIN_BINDS if name in context})
    return binds


def _check_path(value: Any, context: Mapping[str, Any], roots: Sequence[Path], field: str) -> None:
    if not isinstance(value, str):
        return
    folder = context.get("pipeline_dir")
    allowed = ([Path(folder)] if folder else []) + list(roots)
    try:
        check_output_path(value, allowed)
    except OutputPathError as exc:
        raise TemplateRenderError(field, str(exc)) from None


@cache
def _environment() -> SandboxedEnvironment:
    # imported on first use: a pipeline without templates never pays for Jinja2
    from jinja2 import StrictUndefined, pass_context
    from jinja2.sandbox import SandboxedEnvironment

    class _BoundedEnvironment(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

    @pass_context
    def finalize(context: Any, value: Any) -> Any:
        collector = context.get(_COLLECTOR_KEY)
        if isinstance(collector, _SqlValues):
            return collector._placeholder_for(value)
        return _plain_text(value)

    env = _BoundedEnvironment(
        undefined=StrictUndefined, keep_trailing_newline=True, finalize=finalize
    )
    env.filters = {name: _bounded_filter(f) for name, f in env.filters.items()}
    env.filters["identifier"] = lambda value: SqlIdentifier(_plain_text(value))
    env.filters["unsafe_raw_sql"] = lambda value: RawSql(_plain_text(value))
    return env


def _render(value: Any, context: Mapping[str, Any], field: str) -> Any:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        return _generate(value, context, field)
    if isinstance(value, Mapping):
        return {k: _render(v, context, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render(v, context, f"{field}[{i}]") for i, v in enumerate(value)]
    return value


def _render_sql(source: str, context: Mapping[str, Any], field: str, marker: SqlTemplate) -> str:
    if "{{" not in source and "{%" not in source:
        return source
    collector = _SqlValues()
    with_placeholders = _generate(source, {**context, _COLLECTOR_KEY: collector}, field)
    values = collector._values
    slots = locate_placeholders(with_placeholders, collector._pattern())
    if sorted(slot.index for slot in slots) != list(range(len(values))):
        raise TemplateRenderError(
            field, "a filter block changed an expression's output; apply filters inside {{ }}"
        )
    pieces: list[tuple[str, bool]] = []
    position = 0
    for slot in slots:
        pieces.append((with_placeholders[position : slot.start], False))
        try:
            text = sql_for_value(
                values[slot.index],
                slot,
                _plain_text,
                backslash_is_plain=marker.backslash_is_plain,
            )
        except SqlValueError as exc:
            raise TemplateRenderError(field, f"expression {slot.index + 1}: {exc}") from None
        except _RenderLimitExceeded:
            raise _too_large(field) from None
        if marker.sqlalchemy_text and _SQLALCHEMY_MARKUP.search(text):
            raise TemplateRenderError(
                field,
                f"expression {slot.index + 1}: the value holds text SQLAlchemy reads as a "
                "parameter ('%(name)s' or '__[POSTCOMPILE_'); pass it as a bind "
                "parameter instead (:name in the SQL)",
            )
        pieces.append((text, not isinstance(values[slot.index], RawSql)))
        position = slot.end
    pieces.append((with_placeholders[position:], False))
    rendered = _join_escaping_binds(pieces) if marker.sqlalchemy_text else _join(pieces)
    if len(rendered) > MAX_RENDERED_CHARS:
        raise _too_large(field)
    return rendered


def _join(pieces: list[tuple[str, bool]]) -> str:
    return "".join(text for text, _ in pieces)


#: what SQLAlchemy rewrites in compiled SQL text, even inside quotes, on some databases
_SQLALCHEMY_MARKUP = re.compile(r"%\([^)]+?\)s|__\[POSTCOMPILE_")

#: what SQLAlchemy's ``text()`` reads as a bind parameter: ``:name`` after no word,
#: colon or backslash, and before no word or colon; ``\\:name`` keeps it as text
_TEXT_BIND = re.compile(r"(?<![:\w\\]):\w+(?![:\w])")


def _join_escaping_binds(pieces: list[tuple[str, bool]]) -> str:
    """Join the pieces, escaping each ``:name`` that starts inside a value."""
    joined = _join(pieces)
    value_spans: list[tuple[int, int]] = []
    position = 0
    for text, is_value in pieces:
        if is_value:
            value_spans.append((position, position + len(text)))
        position += len(text)
    starts = [
        m.start()
        for m in _TEXT_BIND.finditer(joined)
        if any(a <= m.start() < b for a, b in value_spans)
    ]
    for start in reversed(starts):
        joined = joined[:start] + "\\" + joined[start:]
    return joined


def _generate(source: str, context: Mapping[str, Any], field: str) -> str:
    from jinja2 import TemplateError

    chunks: list[str] = []
    size = 0
    try:
        for chunk in _environment().from_string(source).generate(context):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise _too_large(field)
            chunks.append(chunk)
    except TemplateError as exc:
        raise TemplateRenderError(field, f"template error: {exc}") from None
    except _RenderLimitExceeded:
        raise _too_large(field) from None
    except RecursionError:
        raise TemplateRenderError(field, "a value is nested too deeply to render") from None
    return "".join(chunks)


def _too_large(field: str) -> TemplateRenderError:
    return TemplateRenderError(
        field,
        f"the rendered value is longer than {MAX_RENDERED_CHARS:,} characters "
        "(the limit for one rendered config value)",
    )


def _plain_text(value: Any) -> str:
    """``str(value)``, refused once it would pass :data:`MAX_RENDERED_CHARS`."""
    if isinstance(value, SqlIdentifier):
        return value.name
    if isinstance(value, RawSql):
        return value.text
    if _expanded_size(value) > MAX_RENDERED_CHARS:
        raise _RenderLimitExceeded
    return str(value)


def _expanded_size(value: Any, limit: int = MAX_RENDERED_CHARS) -> int:
    """About how many characters ``str(value)`` has, counted without building it and
    stopping just past ``limit`` (a shared alias tree may expand to billions)."""
    size = 0
    pending = [value]
    while pending and size <= limit:
        item = pending.pop()
        if isinstance(item, str | bytes):
            size += len(item)
        elif isinstance(item, Mapping):
            size += 2 + 4 * len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            size += 2 + 2 * len(item)
            pending.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            size += max(1, item.bit_length() // 3)
        else:
            size += 8
    return size


def _bounded_filter(function: Any) -> Any:
    """Wrap a Jinja filter so that an oversized input is refused before the filter runs."""
    from functools import wraps

    @wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for arg in args:
            # Jinja's own objects (its context, an undefined value) are not data to measure
            is_jinja_object = type(arg).__module__.startswith("jinja2.")
            if not is_jinja_object and _expanded_size(arg) > MAX_RENDERED_CHARS:
                raise _RenderLimitExceeded
        return function(*args, **kwargs)

    return bounded


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``'x' * 10**9`` and ``10 ** 10 ** 10`` before Python computes them."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(count, int)
                and _expanded_size(seq) * max(count, 0) > MAX_RENDERED_CHARS
            ):
                raise _RenderLimitExceeded
    elif (
        operator == "**"
        and isinstance(left, int)
        and isinstance(right, int)
        and abs(left) > 1
        and right * abs(left).bit_length() > 4 * MAX_RENDERED_CHARS
    ):
        raise _RenderLimitExceeded
