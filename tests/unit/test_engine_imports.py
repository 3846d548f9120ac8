"""The engine depends on the step interface only, and the package's imports form no cycle.

Concrete steps are plugins: the engine reaches them through the registry and the
interfaces in ``steps/base.py``, ``steps/registry.py`` and
``steps/transaction_group.py``, never by importing them.
"""

from __future__ import annotations

import ast
import graphlib
import json
import os
import subprocess
import sys
from pathlib import Path

import batchpilot

PACKAGE_DIR = Path(batchpilot.__file__).parent
STEP_INTERFACE = {
    "batchpilot.steps",
    "batchpilot.steps.base",
    "batchpilot.steps.registry",
    "batchpilot.steps.transaction_group",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}
ENGINE_MODULES = sorted(m for m in MODULES if m.startswith("batchpilot.engine."))


def imported_modules(node: ast.stmt | ast.Module, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``node`` imports (``from a import b`` may import a.b)."""
    found = set()
    for item in ast.walk(node):
        if isinstance(item, ast.Import):
            found |= {alias.name for alias in item.names}
        elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
            found.add(item.module)
            found |= {f"{item.module}.{alias.name}" for alias in item.names}
    return {name for name in found if name in known}


def test_importing_every_engine_module_loads_no_concrete_step():
    script = (
        "import importlib, json, sys\n"
        f"for name in {ENGINE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('batchpilot.steps'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_DIR.parent)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "batchpilot.engine.transactions" in ENGINE_MODULES
    assert loaded <= STEP_INTERFACE, f"the engine loads {sorted(loaded - STEP_INTERFACE)}"


def test_no_engine_module_imports_a_step_module_or_imports_inside_a_function():
    for name in ENGINE_MODULES:
        tree = ast.parse(MODULES[name].read_text())
        everywhere = imported_modules(tree, MODULES)
        steps = {m for m in everywhere if m.startswith("batchpilot.steps")}
        assert steps <= STEP_INTERFACE, f"{name} imports {sorted(steps - STEP_INTERFACE)}"
        at_top = set()
        for statement in tree.body:
            if isinstance(statement, ast.Import | ast.ImportFrom):
                at_top |= imported_modules(statement, MODULES)
        assert everywhere == at_top, (
            f"{name} imports {sorted(everywhere - at_top)} inside a function or block"
        )


def test_the_package_imports_form_no_cycle():
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top_level = [s for s in tree.body if isinstance(s, ast.Import | ast.ImportFrom)]
        graph[name] = set().union(*(imported_modules(s, MODULES) for s in top_level)) - {name}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
