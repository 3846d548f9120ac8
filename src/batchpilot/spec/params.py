"""Typed pipeline parameters: their declarations, and the one check of a run's values.

In a pipeline file each entry of ``params:`` is either a bare default (its type is
inferred from it) or a declaration::

    params:
      min_amount: 0                                   # a default; type number
      count: {type: integer, minimum: 1, default: 5}
      region: {enum: [north, south], description: "sales region"}   # required

A mapping is a declaration when it has at least one of :data:`DECLARATION_KEYS`; to
give a mapping as a bare default, declare it: ``{type: object, default: {...}}``.

:func:`resolve_params` is the single check every way into a run uses (command line,
Python API, REST API, Airflow conf): it refuses unknown names, missing required
values and values that do not match their declaration, before any run exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import yaml

from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec.limits import check_document_size

if TYPE_CHECKING:
    from batchpilot.spec.model import PipelineSpec

#: The keys of a parameter declaration.
DECLARATION_KEYS = ("type", "default", "enum", "minimum", "maximum", "pattern", "description")
MAX_PARAM_NAME_LENGTH = 100
_TRUE_TEXT = frozenset({"true", "yes", "on", "1"})
_FALSE_TEXT = frozenset({"false", "no", "off", "0"})
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")


class ParamType(StrEnum):
    """A parameter's type, named as in JSON Schema (and Airflow's ``Param``)."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ARRAY = "array"
    OBJECT = "object"


class ParamText(str):
    """A parameter value given as text (``--param key=VALUE``, a query string).

    :func:`resolve_params` converts it to the parameter's type: ``"10"`` becomes 10
    for an integer or number, ``"yes"`` True for a boolean, YAML/JSON for an array or
    object; a string parameter keeps the text as written. For a parameter of no
    declared type the text is read as YAML, as before types existed.
    """


@dataclass(frozen=True)
class ParamSpec:
    """One declared (or inferred) parameter. ``type=None`` accepts any value."""

    name: str
    type: ParamType | None = None
    has_default: bool = False
    default: Any = None
    enum: tuple[Any, ...] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    pattern: str | None = None
    description: str | None = None
    #: False when written as a bare default (the file form is then the default itself)
    declared: bool = False

    @property
    def required(self) -> bool:
        """True when a run must supply a value (declared without a default)."""
        return not self.has_default

    def to_document(self) -> Any:
        """The file form: the bare default, or the declaration mapping."""
        if not self.declared:
            return self.default
        document: dict[str, Any] = {}
        if self.type is not None:
            document["type"] = self.type.value
        if self.has_default:
            document["default"] = self.default
        for key in ("enum", "minimum", "maximum", "pattern", "description"):
            value = getattr(self, key)
            if value is not None:
                document[key] = list(value) if key == "enum" else value
        return document


def is_declaration(value: Any) -> bool:
    """True when a ``params:`` entry is a declaration rather than a bare default."""
    return isinstance(value, Mapping) and any(key in value for key in DECLARATION_KEYS)


def parse_param_specs(raw: Mapping[str, Any]) -> dict[str, ParamSpec]:
    """Read a ``params:`` mapping into declarations, in their written order.

    Raises :class:`SpecErrors` naming ``params.<name>.<key>`` for an unknown key, an
    unknown type, a bound on a type that has none, a pattern that does not compile,
    or a default that does not satisfy its own declaration.
    """
    specs: dict[str, ParamSpec] = {}
    errors: list[SpecError] = []
    for name, value in raw.items():
        try:
            specs[str(name)] = _param_spec(name, value)
        except _ParamError as exc:
            label = f"params.{name}" if isinstance(name, str) and name else "params"
            errors.append(SpecError(exc.reason, field=f"{label}{exc.where}"))
    if errors:
        raise SpecErrors(errors)
    return specs


def inferred_type(value: Any) -> ParamType | None:
    """The type of a bare default: ``5`` → integer, ``"x"`` → string, ``None`` → any."""
    if isinstance(value, bool):
        return ParamType.BOOLEAN
    if isinstance(value, int):
        return ParamType.INTEGER
    if isinstance(value, float):
        return ParamType.NUMBER
    if isinstance(value, str):
        return ParamType.STRING
    if isinstance(value, list | tuple):
        return ParamType.ARRAY
    if isinstance(value, Mapping):
        return ParamType.OBJECT
    return None


class _ParamError(Exception):
    def __init__(self, reason: str, where: str = "") -> None:
        self.reason = reason
        self.where = where


def _param_spec(name: Any, value: Any) -> ParamSpec:
    if not isinstance(name, str) or not name or len(name) > MAX_PARAM_NAME_LENGTH:
        raise _ParamError(
            f"a parameter name must be text of 1 to {MAX_PARAM_NAME_LENGTH} characters"
        )
    if not is_declaration(value):
        kind = inferred_type(value)
        # An integer default accepts any number, as --param did before types existed.
        kind = ParamType.NUMBER if kind is ParamType.INTEGER else kind
        return ParamSpec(name=name, type=kind, has_default=True, default=value)
    unknown = [str(k) for k in value if k not in DECLARATION_KEYS]
    if unknown:
        raise _ParamError(f"unknown field (known: {', '.join(DECLARATION_KEYS)})", f".{unknown[0]}")
    spec = ParamSpec(
        name=name,
        type=_declared_type(value),
        has_default="default" in value,
        default=value.get("default"),
        enum=_declared_enum(value.get("enum")),
        minimum=_declared_bound(value, "minimum"),
        maximum=_declared_bound(value, "maximum"),
        pattern=_declared_pattern(value.get("pattern")),
        description=_declared_description(value.get("description")),
        declared=True,
    )
    _check_declaration(spec)
    return spec


def _declared_type(value: Mapping[str, Any]) -> ParamType | None:
    if "type" in value:
        try:
            return ParamType(value["type"])
        except ValueError:
            known = ", ".join(t.value for t in ParamType)
            raise _ParamError(f"unknown type {value['type']!r} (known: {known})", ".type") from None
    if value.get("enum"):
        kinds = {inferred_type(v) for v in value["enum"]}
        return kinds.pop() if len(kinds) == 1 else None
    if "default" in value:
        return inferred_type(value["default"])
    return None


def _declared_enum(value: Any) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise _ParamError("enum must be a non-empty list of the allowed values", ".enum")
    return tuple(value)


def _declared_bound(value: Mapping[str, Any], key: str) -> int | float | None:
    bound = value.get(key)
    if bound is None:
        return None
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
        raise _ParamError(f"{key} must be a finite number", f".{key}")
    return bound


def _declared_pattern(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _ParamError("pattern must be a regular expression (text)", ".pattern")
    try:
        re.compile(value)
    except re.error as exc:
        raise _ParamError(f"pattern is not a valid regular expression: {exc}", ".pattern") from None
    return value


def _declared_description(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _ParamError("description must be text", ".description")
    return value


def _check_declaration(spec: ParamSpec) -> None:
    numeric = (ParamType.INTEGER, ParamType.NUMBER)
    if (spec.minimum is not None or spec.maximum is not None) and spec.type not in numeric:
        where = ".minimum" if spec.minimum is not None else ".maximum"
        raise _ParamError("minimum and maximum need type integer or number", where)
    if spec.pattern is not None and spec.type is not ParamType.STRING:
        raise _ParamError("pattern needs type string", ".pattern")
    if spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
        raise _ParamError("minimum is larger than maximum", ".minimum")
    for value in spec.enum or ():
        problem = _type_problem(spec, value)
        if problem:
            raise _ParamError(f"enum value {value!r}: {problem}", ".enum")
    if spec.has_default:
        problem = _value_problem(spec, spec.default)
        if problem:
            raise _ParamError(
                f"the default {spec.default!r} does not fit the declaration: {problem}; "
                "leave 'default' out to make the parameter required",
                ".default",
            )


def param_specs_of(spec: PipelineSpec) -> dict[str, ParamSpec]:
    """The pipeline's parameter declarations (inferred from ``spec.params`` when the spec
    was built by hand without declarations)."""
    if spec.param_specs:
        return dict(spec.param_specs)
    return parse_param_specs(spec.params)


def resolve_params(spec: PipelineSpec, supplied: Mapping[str, Any]) -> dict[str, Any]:
    """Check a run's parameter values against the pipeline's declarations and return
    every parameter's value (supplied, else default), in declaration order.

    The one check for every way into a run. Values given as :class:`ParamText` are
    converted to the declared type first. Raises :class:`SpecErrors` (each naming the
    file and ``params.<name>``) for an unknown parameter (listing the known ones), a
    required parameter not supplied, or a value of the wrong type, outside ``enum``,
    ``minimum``/``maximum``, or not matching ``pattern``.
    """
    specs = param_specs_of(spec)
    path = spec.source_path
    errors = [
        SpecError(
            f"unknown parameter {name!r} ({_known(specs)})", path=path, field=f"params.{name}"
        )
        for name in supplied
        if name not in specs
    ]
    resolved: dict[str, Any] = {}
    for name, param in specs.items():
        if name not in supplied:
            if param.required:
                errors.append(
                    SpecError(
                        f"parameter {name!r} is required (declared without a default); "
                        f"give it, e.g. --param {name}=VALUE",
                        path=path,
                        field=f"params.{name}",
                    )
                )
            else:
                resolved[name] = param.default
            continue
        try:
            resolved[name] = checked_value(param, supplied[name])
        except ValueError as exc:
            errors.append(SpecError(str(exc), path=path, field=f"params.{name}"))
    if errors:
        raise SpecErrors(errors)
    return resolved


def preview_params(spec: PipelineSpec) -> dict[str, Any]:
    """Values to check a pipeline with when no run supplies any (``validate``): the
    defaults, and for a required parameter a stand-in of its type (its first allowed
    value, its minimum, 0, false, empty)."""
    preview: dict[str, Any] = {}
    for name, param in param_specs_of(spec).items():
        if param.has_default:
            preview[name] = param.default
        elif param.enum:
            preview[name] = param.enum[0]
        else:
            preview[name] = _stand_in(param)
    return preview


def _stand_in(param: ParamSpec) -> Any:
    if param.type in (ParamType.INTEGER, ParamType.NUMBER):
        value = param.minimum if param.minimum is not None else 0
        return min(value, param.maximum) if param.maximum is not None else value
    stand_ins = {ParamType.BOOLEAN: False, ParamType.ARRAY: [], ParamType.OBJECT: {}}
    return stand_ins.get(param.type, "") if param.type else ""


def checked_value(param: ParamSpec, value: Any) -> Any:
    """``value`` converted (from :class:`ParamText`) and checked against ``param``.

    Raises ``ValueError`` saying what is wrong and what is expected.
    """
    if isinstance(value, ParamText):
        value = _from_text(param, str(value))
    elif isinstance(value, tuple):
        value = list(value)
    check_document_size(value)
    problem = _value_problem(param, value)
    if problem:
        raise ValueError(f"{value!r} does not fit: {problem}")
    if param.type is ParamType.INTEGER and isinstance(value, float):
        return int(value)
    return value


def _from_text(param: ParamSpec, text: str) -> Any:
    kind = param.type
    if kind is ParamType.STRING:
        return text
    stripped = text.strip()
    if kind is ParamType.INTEGER:
        if not _INTEGER_TEXT.match(stripped):
            raise ValueError(f"{text!r} is not a whole number")
        return int(stripped)
    if kind is ParamType.NUMBER:
        if _INTEGER_TEXT.match(stripped):
            return int(stripped)
        try:
            return float(stripped)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind is ParamType.BOOLEAN:
        lowered = stripped.lower()
        if lowered in _TRUE_TEXT | _FALSE_TEXT:
            return lowered in _TRUE_TEXT
        raise ValueError(f"{text!r} is not a boolean (use true or false)")
    if not text:
        return ""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        if kind is None:
            return text  # not YAML: the text itself, as before types existed
        raise ValueError(f"{text!r} is not YAML or JSON") from None
    return loaded


def _type_problem(param: ParamSpec, value: Any) -> str | None:
    kind = param.type
    if kind is None:
        return None
    if kind is ParamType.INTEGER:
        whole = isinstance(value, float) and math.isfinite(value) and value.is_integer()
        ok = (isinstance(value, int) and not isinstance(value, bool)) or whole
    elif kind is ParamType.NUMBER:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            return "expected a finite number"
    else:
        expected = {
            ParamType.STRING: str,
            ParamType.BOOLEAN: bool,
            ParamType.ARRAY: list,
            ParamType.OBJECT: Mapping,
        }[kind]
        ok = isinstance(value, expected)
    return None if ok else f"expected type {kind.value}"


def _value_problem(param: ParamSpec, value: Any) -> str | None:
    problem = _type_problem(param, value)
    if problem:
        return problem
    if param.enum is not None and value not in param.enum:
        return f"allowed values: {', '.join(repr(v) for v in param.enum)}"
    if param.minimum is not None and value < param.minimum:
        return f"the minimum is {param.minimum}"
    if param.maximum is not None and value > param.maximum:
        return f"the maximum is {param.maximum}"
    if param.pattern is not None and not re.search(param.pattern, value):
        return f"it must match the pattern {param.pattern!r}"
    return None


def _known(specs: Mapping[str, ParamSpec]) -> str:
    if not specs:
        return "this pipeline declares no parameters"
    return "known: " + ", ".join(specs)
