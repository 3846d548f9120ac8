"""Pipeline parameters as Airflow ``Param``s: the default, and the declared JSON schema."""

from __future__ import annotations

from batchpilot.spec.params import ParamSpec

_SCHEMA_KEYS = ("enum", "minimum", "maximum", "pattern")


def param_arguments(param: ParamSpec) -> str:
    """The arguments of ``Param(...)`` for one parameter, as Python source.

    A bare default stays ``Param(<default>)``; a declaration adds its ``type``,
    ``enum``, ``minimum``, ``maximum``, ``pattern`` and ``description``, which Airflow
    checks a DAG run's conf against. A required parameter has no default.
    """
    if not param.declared:
        return repr(param.default)
    arguments = [repr(param.default)] if param.has_default else []
    if param.description is not None:
        arguments.append(f"description={param.description!r}")
    if param.type is not None:
        arguments.append(f"type={param.type.value!r}")
    for key in _SCHEMA_KEYS:
        value = getattr(param, key)
        if value is not None:
            arguments.append(f"{key}={list(value) if key == 'enum' else value!r}")
    return ", ".join(arguments)
