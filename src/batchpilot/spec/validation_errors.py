"""Pydantic's validation errors of a pipeline document, as errors that name the file,
line, node and field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from batchpilot.errors import SpecError
from batchpilot.spec.limits import MAX_NODE_ID_LENGTH, MAX_RETRIES, MAX_WORKERS


def node_line(document: Mapping[str, Any], index: int) -> int | None:
    """The line the ``index``-th node starts on in its YAML file, when known."""
    nodes = document.get("nodes")
    if isinstance(nodes, list) and index < len(nodes):
        return getattr(nodes[index], "line", None)
    return None


def spec_errors_from_validation(
    exc: ValidationError, document: Mapping[str, Any], path: str | None
) -> list[SpecError]:
    """One :class:`SpecError` per problem pydantic found in ``document``."""
    errors: list[SpecError] = []
    nodes = document.get("nodes") if isinstance(document.get("nodes"), list) else []
    for err in exc.errors():
        loc = list(err["loc"])
        message = _message(err)
        if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
            index = loc[1]
            raw_node = nodes[index] if index < len(nodes) else {}
            node_id = raw_node.get("id") if isinstance(raw_node, Mapping) else None
            field = ".".join(str(p) for p in loc[2:]) or None
            errors.append(
                SpecError(
                    message,
                    path=path,
                    node_id=_node_label(node_id, index),
                    field=field,
                    line=node_line(document, index),
                )
            )
        else:
            field = _loc_text(loc)
            errors.append(SpecError(message, path=path, field=field or None))
    return errors


def _loc_text(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _node_label(node_id: Any, index: int) -> str:
    """The node's id for an error, or ``#n`` when the id itself is unusable."""
    usable = isinstance(node_id, str) and 0 < len(node_id) <= MAX_NODE_ID_LENGTH
    return node_id if usable and "\n" not in node_id else f"#{index + 1}"


#: What a bounded whole-number field expects, for its error message.
_WHOLE_NUMBER_FIELDS = {
    "retries": f"a whole number from 0 to {MAX_RETRIES}",
    "max_workers": f"a whole number from 1 to {MAX_WORKERS}",
}


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    expected = _WHOLE_NUMBER_FIELDS.get(str(err["loc"][-1])) if err["loc"] else None
    if expected:
        given = repr(err["input"])
        return f"must be {expected}, got {given if len(given) <= 40 else given[:40] + '…'}"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")
