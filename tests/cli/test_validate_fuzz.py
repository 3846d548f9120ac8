"""Random mutations of the example pipelines, fed to ``batchpilot validate``: the only
outcomes are exit 0, or exit 2 with one-line messages naming the file — never a
traceback, never a hang (each example has a deadline)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_runner import Cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*/*.yaml"))

#: Values a careless or hostile user might put anywhere in a pipeline.
HOSTILE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "nan", "inf", "1e400", "-5", "10x", "{{ nope }}", "{{", "a" * 300]),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.recursive(st.just([]), lambda inner: st.lists(inner, min_size=1, max_size=1), max_leaves=80),
)


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a parsed document a value can be replaced or removed."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _paths(value, (*prefix, index))
    return found


def _mutate(document: Any, path: tuple[Any, ...], change: Callable[[Any, Any], None]) -> None:
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    change(parent, path[-1])


@st.composite
def mutated_examples(draw: st.DrawFn) -> tuple[str, str, str]:
    """(example folder name, file suffix, mutated file text)."""
    source = draw(st.sampled_from(EXAMPLE_FILES))
    text = source.read_text()
    kind = draw(st.sampled_from(["replace", "delete", "text"]))
    if kind == "text":
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 40)))
        insert = draw(st.sampled_from(["", "&a [*a]", "{", "- ", ":", "\t", "name: again\n"]))
        return source.parent.name, ".yaml", text[:start] + insert + text[end:]
    document = yaml.safe_load(text)
    path = draw(st.sampled_from(_paths(document)))
    if kind == "delete":

        def change(parent: Any, key: Any) -> None:
            del parent[key]

    else:
        value = draw(HOSTILE_VALUES)

        def change(parent: Any, key: Any) -> None:
            parent[key] = value

    _mutate(document, path, change)
    if draw(st.booleans()):  # the same document as a visual builder would save it
        return source.parent.name, ".json", json.dumps(document)
    return source.parent.name, ".yaml", yaml.safe_dump(document, sort_keys=False)


@pytest.fixture(scope="module")
def example_copies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples copied once (their modules and data next to the mutated files)."""
    root = tmp_path_factory.mktemp("examples")
    for folder in {path.parent for path in EXAMPLE_FILES}:
        shutil.copytree(folder, root / folder.name, ignore=shutil.ignore_patterns("out"))
    return root


@settings(
    max_examples=40,
    deadline=30_000,  # a hang guard: an example takes well under 1 s on a quiet machine
    database=None,  # no example database written into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=mutated_examples())
def test_validate_answers_every_mutation_with_a_verdict(
    case: tuple[str, str, str], example_copies: Path, home: Path
):
    folder, suffix, text = case
    path = example_copies / folder / f"mutated{suffix}"
    path.write_text(text)
    result = Cli(home, example_copies, in_process=True)("validate", str(path), "-o", "json")
    assert result.code in (0, 2), (result.code, result.stdout, result.stderr)
    if result.code == 2:
        (verdict,) = result.json()
        assert not verdict["ok"] and verdict["errors"]
        for message in verdict["errors"]:
            assert "\n" not in message and str(path) in message, message
