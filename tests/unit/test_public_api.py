"""The public names: ``batchpilot.__all__`` and ``batchpilot.engine.__all__`` list what
exists, each is documented, and nothing private is exported."""

from __future__ import annotations

import inspect
import types

import pytest

import batchpilot
import batchpilot.engine

PACKAGES = [batchpilot, batchpilot.engine]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_exported_name_exists_once(package: types.ModuleType):
    exported = package.__all__
    assert len(set(exported)) == len(exported)
    missing = [name for name in exported if not hasattr(package, name)]
    assert missing == []


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_exported_class_and_function_is_documented(package: types.ModuleType):
    undocumented = [
        name
        for name in package.__all__
        if (inspect.isclass(getattr(package, name)) or inspect.isfunction(getattr(package, name)))
        and not (inspect.getdoc(getattr(package, name)) or "").strip()
    ]
    assert undocumented == []


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_nothing_private_is_exported(package: types.ModuleType):
    for name in package.__all__:
        assert not name.startswith("_") or (name.startswith("__") and name.endswith("__"))
        value = getattr(package, name)
        module = getattr(value, "__module__", None) or ""
        if inspect.isclass(value) or inspect.isfunction(value):
            assert module.startswith("batchpilot."), (name, module)
            assert not any(part.startswith("_") for part in module.split(".")), (name, module)


def test_the_engine_exports_every_public_object_it_imports():
    """A name imported into ``batchpilot.engine`` is either exported or a submodule."""
    public = {
        name
        for name, value in vars(batchpilot.engine).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(batchpilot.engine.__all__)


def test_the_engine_offers_each_service_the_edges_need():
    service = batchpilot.engine.RunService
    for method in (
        "start",
        "follow",
        "resume",
        "retry",
        "cancel",
        "compensate",
        "reap",
        "list_runs",
        "show_run",
        "read_logs",
    ):
        assert inspect.getdoc(getattr(service, method)), method
    assert callable(batchpilot.engine.check_connection)
    assert callable(batchpilot.engine.check_pipeline_file)


def test_the_package_exports_the_python_api_and_the_error_root():
    for name in ("Pipeline", "Task", "RunResult", "RunStatus", "TaskState", "BatchpilotError"):
        assert name in batchpilot.__all__
    assert isinstance(batchpilot.__version__, str)
    errors = [getattr(batchpilot, n) for n in batchpilot.__all__ if n.endswith(("Error", "Errors"))]
    assert all(issubclass(e, batchpilot.BatchpilotError) for e in errors)
