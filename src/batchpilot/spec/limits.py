"""The bounds a pipeline definition must stay within, and the checks that enforce them.

Every bound is a named constant so the README, the errors and the tests quote
the same number. A definition past a bound is refused with a :class:`SpecError`
that says which bound was hit, before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchpilot.errors import SpecError

#: A pipeline file larger than this is refused before it is read (1 MiB).
MAX_FILE_BYTES = 1024 * 1024
#: Mappings and lists nest at most this deep in a pipeline document.
MAX_NESTING_DEPTH = 50
#: Values (mappings, lists, keys and scalars) in a document once YAML aliases are expanded.
MAX_DOCUMENT_VALUES = 100_000
#: Characters of text (keys and strings) in a document once YAML aliases are expanded.
MAX_DOCUMENT_CHARS = 4_000_000
#: Longest pipeline name (it names DAG files and DAG ids).
MAX_PIPELINE_NAME_LENGTH = 100
#: Longest node id (it names each task's artifact and log files).
MAX_NODE_ID_LENGTH = 100
#: Most retries of one task, compensation or callback.
MAX_RETRIES = 100
#: Most tasks one run runs in parallel (``max_workers``, ``--workers``).
MAX_WORKERS = 256
#: Longest duration (``retry_delay``, ``max_retry_delay``, ``timeout``): 7 days.
MAX_DURATION_S = 7 * 86400.0


#: a measured value: (values, characters of text, depth)
_Size = tuple[int, int, int]
_SCALAR: _Size = (1, 0, 0)
#: the types a parsed document is made of, measured without ``isinstance`` checks
_PLAIN_SCALARS = frozenset({int, float, bool, type(None)})
_CONTAINERS = (Mapping, list, tuple, set, frozenset)


def check_document_size(
    document: Any, *, path: str | None = None, field: str | None = None
) -> None:
    """Refuse a document nested deeper than :data:`MAX_NESTING_DEPTH`, or holding more than
    :data:`MAX_DOCUMENT_VALUES` values or :data:`MAX_DOCUMENT_CHARS` characters of text once
    its YAML aliases are expanded (a "billion laughs" file), or an alias that contains itself.

    Shared sub-trees (what an alias produces) are measured once, so the check costs time in
    proportion to the file, never to its expansion. Raises :class:`SpecError` naming the bound.
    """
    values, chars, _ = _DocumentMeter().measure(document, 1)
    if values > MAX_DOCUMENT_VALUES:
        raise SpecError(
            f"the document expands to {values:,} values (YAML aliases included); "
            f"the limit is {MAX_DOCUMENT_VALUES:,}",
            path=path,
            field=field,
        )
    if chars > MAX_DOCUMENT_CHARS:
        raise SpecError(
            f"the document expands to {chars:,} characters of text (YAML aliases "
            f"included); the limit is {MAX_DOCUMENT_CHARS:,}",
            path=path,
            field=field,
        )


def nesting_error(*, path: str | None = None, line: int | None = None) -> SpecError:
    """The error for a document nested deeper than :data:`MAX_NESTING_DEPTH`."""
    return SpecError(
        f"mappings and lists are nested more than {MAX_NESTING_DEPTH} levels deep "
        "(the limit for a pipeline document)",
        path=path,
        line=line,
    )


class _DocumentMeter:
    """Measures a parsed document, each shared object once."""

    def __init__(self) -> None:
        self._sizes: dict[int, _Size] = {}
        self._open: set[int] = set()

    def measure(self, value: Any, depth: int) -> _Size:
        kind = type(value)
        if kind is str:
            return (1, len(value), 0)
        if kind in _PLAIN_SCALARS:
            return _SCALAR
        if kind is not dict and kind is not list:
            if isinstance(value, str):
                return (1, len(value), 0)
            if not isinstance(value, _CONTAINERS):
                return _SCALAR
        key = id(value)
        known = self._sizes.get(key)
        if known is None:
            if key in self._open:
                raise SpecError("a YAML alias refers to a mapping or list that contains it")
            if depth > MAX_NESTING_DEPTH:
                raise nesting_error()
            self._open.add(key)
            known = self._measure_container(value, depth)
            self._open.discard(key)
            self._sizes[key] = known
        if depth + known[2] - 1 > MAX_NESTING_DEPTH:
            raise nesting_error()
        return known

    def _measure_container(self, value: Any, depth: int) -> _Size:
        values, chars, deepest = 1, 0, 0
        items = value.items() if isinstance(value, Mapping) else ((None, v) for v in value)
        for item_key, item in items:
            if item_key is not None:
                values += 1
                chars += len(item_key) if isinstance(item_key, str) else 0
            item_values, item_chars, item_depth = self.measure(item, depth + 1)
            values += item_values
            chars += item_chars
            if item_depth > deepest:
                deepest = item_depth
            if values > MAX_DOCUMENT_VALUES or chars > MAX_DOCUMENT_CHARS:
                break  # already past a bound: the caller reports it
        return (values, chars, deepest + 1)


def check_workers(workers: int | None) -> None:
    """Refuse a number of parallel tasks that is not a whole number from 1 to
    :data:`MAX_WORKERS` (``None`` means: the pipeline's or the settings' default).

    Raises :class:`SpecError` naming the field ``workers``.
    """
    if workers is None:
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise SpecError(
            f"workers must be a whole number from 1 to {MAX_WORKERS}, got {workers!r}",
            field="workers",
        )
