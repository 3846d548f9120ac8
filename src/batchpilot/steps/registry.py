"""Step types by name: the built-in ones and those of the ``batchpilot.steps`` entry points.

Step modules are imported only when a pipeline uses one of their types, so a
command that runs a CSV-to-PostgreSQL pipeline never pays for DuckDB, polars
or fastexcel.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

from batchpilot.errors import SpecError
from batchpilot.steps.base import Step

ENTRY_POINT_GROUP = "batchpilot.steps"

#: type name → "module:Class" of every built-in step
BUILTIN_STEPS = {
    "empty": "batchpilot.steps.empty:EmptyStep",
    "python": "batchpilot.steps.python:PythonStep",
    "transform.python": "batchpilot.steps.python:TransformPythonStep",
    "extract.csv": "batchpilot.steps.extract:CsvExtract",
    "extract.excel": "batchpilot.steps.extract:ExcelExtract",
    "extract.parquet": "batchpilot.steps.extract:ParquetExtract",
    "extract.sql": "batchpilot.steps.extract:SqlExtract",
    "transform.sql": "batchpilot.steps.transform:SqlTransform",
    "transform.filter": "batchpilot.steps.transform:FilterTransform",
    "transform.dedupe": "batchpilot.steps.transform:DedupeTransform",
    "transform.validate": "batchpilot.steps.validate:ValidateTransform",
    "load.file": "batchpilot.steps.load_file:FileLoad",
    "load.sql": "batchpilot.steps.load_sql:SqlLoad",
    "load.postgres": "batchpilot.steps.load_postgres:PostgresLoad",
    "sql": "batchpilot.steps.sql:SqlStep",
}


class StepRegistry:
    """Maps a type name (``extract.csv``) to its :class:`Step` class, loaded on first use."""

    def __init__(self) -> None:
        self._types: dict[str, type[Step]] = {}
        self._lazy: dict[str, str | EntryPoint] = {}

    def register(self, step_class: type[Step]) -> type[Step]:
        """Add a step class under its ``type_name``; usable as a decorator."""
        self._types[step_class.type_name] = step_class
        self._lazy.pop(step_class.type_name, None)
        return step_class

    def register_lazy(self, type_name: str, target: str | EntryPoint) -> None:
        """Add a step type to import when first used (``"module:Class"`` or an entry point)."""
        if type_name not in self._types:
            self._lazy[type_name] = target

    def get(self, type_name: str) -> type[Step]:
        """Return the class for ``type_name``; raises :class:`SpecError` listing the known ones."""
        if type_name in self._types:
            return self._types[type_name]
        target = self._lazy.get(type_name)
        if target is None:
            known = ", ".join(self.names())
            raise SpecError(f"unknown step type '{type_name}'; known types: {known}")
        try:
            if isinstance(target, EntryPoint):
                step_class = target.load()
            else:
                module_name, _, class_name = target.partition(":")
                step_class = getattr(importlib.import_module(module_name), class_name)
        except Exception as exc:
            raise SpecError(
                f"step type '{type_name}' cannot be loaded from {target}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return self.register(step_class)

    def names(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted({*self._types, *self._lazy})

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._types or type_name in self._lazy


_default: StepRegistry | None = None


def default_registry() -> StepRegistry:
    """The registry of built-in steps plus third-party entry points, built once."""
    global _default
    if _default is None:
        registry = StepRegistry()
        for type_name, target in BUILTIN_STEPS.items():
            registry.register_lazy(type_name, target)
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            registry.register_lazy(entry.name, entry)
        _default = registry
    return _default
