"""Step types by name: the built-in ones and those of the ``batchpilot.steps`` entry points."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from batchpilot.errors import SpecError
from batchpilot.steps.base import Step

ENTRY_POINT_GROUP = "batchpilot.steps"

_BUILTIN_MODULES = (
    "batchpilot.steps.empty",
    "batchpilot.steps.python",
    "batchpilot.steps.extract",
    "batchpilot.steps.transform",
    "batchpilot.steps.validate",
    "batchpilot.steps.load_file",
    "batchpilot.steps.load_sql",
    "batchpilot.steps.load_postgres",
    "batchpilot.steps.sql",
)


class StepRegistry:
    """Maps a type name (``extract.csv``) to its :class:`Step` class."""

    def __init__(self) -> None:
        self._types: dict[str, type[Step]] = {}

    def register(self, step_class: type[Step]) -> type[Step]:
        """Add a step class under its ``type_name``; usable as a decorator."""
        self._types[step_class.type_name] = step_class
        return step_class

    def get(self, type_name: str) -> type[Step]:
        """Return the class for ``type_name``; raises :class:`SpecError` listing the known ones."""
        try:
            return self._types[type_name]
        except KeyError:
            known = ", ".join(sorted(self._types))
            raise SpecError(f"unknown step type '{type_name}'; known types: {known}") from None

    def names(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted(self._types)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._types


_default: StepRegistry | None = None


def default_registry() -> StepRegistry:
    """The registry of built-in steps plus third-party entry points, built once."""
    global _default
    if _default is None:
        registry = StepRegistry()
        for module_name in _BUILTIN_MODULES:
            module = importlib.import_module(module_name)
            for step_class in getattr(module, "STEPS", ()):
                registry.register(step_class)
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            registry.register(entry.load())
        _default = registry
    return _default
