"""Reading a YAML or JSON pipeline file into plain data, with its bounds enforced.

A file larger than :data:`~batchpilot.spec.limits.MAX_FILE_BYTES` is refused before it
is read; nesting deeper than :data:`~batchpilot.spec.limits.MAX_NESTING_DEPTH` is
refused while parsing (so it never exhausts the interpreter's stack); a key repeated
in one mapping is an error naming the key and its line, never "the last one wins".
Mappings read from YAML remember their line (``.line``) for error messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from batchpilot.errors import SpecError
from batchpilot.spec.limits import MAX_FILE_BYTES, MAX_NESTING_DEPTH, nesting_error

_MERGE_TAG = "tag:yaml.org,2002:merge"


class LineDict(dict):
    """A mapping that remembers the line it started on in its YAML file."""

    line: int | None = None


class _SpecYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded in depth, refusing duplicate keys, recording lines."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Composing recurses once per level: stop well before the interpreter's stack does.
        self._depth += 1
        try:
            if self._depth > MAX_NESTING_DEPTH + 1:  # + 1: a scalar is a node, not a level
                raise nesting_error(line=self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_line_mapping(self, node: yaml.MappingNode) -> LineDict:
        self._refuse_duplicate_keys(node)
        mapping = LineDict(super().construct_mapping(node, deep=True))
        mapping.line = node.start_mark.line + 1
        return mapping

    def _refuse_duplicate_keys(self, node: yaml.MappingNode) -> None:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # '<<' merges defaults that the mapping's own keys override
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:
                continue  # an unhashable key: the constructor reports it
            line = key_node.start_mark.line + 1
            if seen is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen}); a key may appear once "
                    "in a mapping",
                    key_node.start_mark,
                )
            first_line[key] = line


_SpecYamlLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _SpecYamlLoader.construct_line_mapping
)


def parse_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file, whatever it holds; raises :class:`SpecError`.

    The error names the file, and the line for a syntax error, a duplicate key or
    nesting past the limit.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError(
                f"the file is {size:,} bytes; a pipeline file may be at most "
                f"{MAX_FILE_BYTES:,} bytes (1 MiB)",
                path=path,
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the file: {exc}", path=path) from None
    if path.suffix.lower() == ".json":
        return _parse_json(text, path)
    return _parse_yaml(text, path)


def _parse_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_SpecYamlLoader)
    except SpecError as exc:
        raise exc.with_path(path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise SpecError(f"invalid YAML: {problem}", path=path, line=line) from None


class _DuplicateJsonKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateJsonKey(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_object, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    except _DuplicateJsonKey as exc:
        raise SpecError(
            f"duplicate key {exc.key!r}; a key may appear once in an object",
            path=path,
            line=duplicate_json_key_line(text, exc.key),
        ) from None
    except ValueError as exc:
        raise SpecError(f"invalid JSON: {exc}", path=path) from None
    except RecursionError:
        raise nesting_error(path=path) from None


def duplicate_json_key_line(text: str, key: str) -> int | None:
    """The line of the first repeat of ``key`` within one object of valid JSON ``text``."""
    objects: list[set[str] | None] = []  # one entry per open container; None for arrays
    expecting_key = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            end = index + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if expecting_key and objects and objects[-1] is not None:
                found = json.loads(text[index : end + 1])
                if found == key and found in objects[-1]:
                    return text.count("\n", 0, index) + 1
                objects[-1].add(found)
            index = end + 1
            continue
        if char == "{":
            objects.append(set())
            expecting_key = True
        elif char == "[":
            objects.append(None)
        elif char in "]}":
            objects.pop()
        elif char == ",":
            expecting_key = bool(objects) and objects[-1] is not None
        elif char == ":":
            expecting_key = False
        index += 1
    return None
