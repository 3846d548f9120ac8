"""The step catalogue: every built-in type loads, unknown ones are named with the known."""

from __future__ import annotations

import importlib

import pytest

from batchpilot.errors import SpecError
from batchpilot.steps.registry import BUILTIN_STEPS, default_registry


@pytest.mark.parametrize("type_name", sorted(BUILTIN_STEPS))
def test_every_builtin_type_loads_under_its_own_name(type_name: str):
    step_class = default_registry().get(type_name)
    assert step_class.type_name == type_name


def test_every_step_module_lists_its_steps_in_the_catalogue():
    modules = {target.partition(":")[0] for target in BUILTIN_STEPS.values()}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for step_class in module.STEPS:
            assert BUILTIN_STEPS[step_class.type_name].endswith(f":{step_class.__name__}")


def test_an_unknown_type_lists_the_known_ones():
    with pytest.raises(SpecError) as info:
        default_registry().get("extract.cvs")
    assert "unknown step type 'extract.cvs'" in str(info.value)
    assert "extract.csv" in str(info.value) and "load.postgres" in str(info.value)
