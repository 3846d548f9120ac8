"""A pipeline's ``triggers``: runs started by a file landing or another pipeline's run ending.

.. code-block:: yaml

    triggers:
      - file: {path: "/data/in/users_*.xlsx", stable_for: 5s, batch: false}
      - after: {pipeline: daily_customers, status: success}   # failed | any

``file``: each new file matching the absolute glob ``path`` (a file is new when its
(path, size, mtime) was never seen), once unchanged for ``stable_for`` (default 5 s),
starts one run with ``{{ trigger.path }}``; with ``batch: true`` one run takes every
waiting file, ``{{ trigger.paths }}``. ``after``: each run of ``pipeline`` that ends
with ``status`` (``success``, ``failed``, ``any``) starts one run with the upstream's
``ds``.

:func:`parse_triggers` checks each trigger on its own (exit 2, naming the file, the
field and the value); :func:`trigger_graph_errors` checks what needs every pipeline
(an ``after`` on an unknown pipeline, a cycle of ``after`` triggers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec.durations import parse_duration

#: ``stable_for`` when not given: a file unchanged this long is complete.
DEFAULT_STABLE_FOR_S = 5.0
#: The longest ``stable_for`` accepted (1 hour).
MAX_STABLE_FOR_S = 3600.0
#: The longest glob accepted (it keys the store's trigger rows).
MAX_GLOB_LENGTH = 400
_FILE_KEYS = ("path", "stable_for", "batch")
#: The key under which a triggered run's params record its trigger payload, so a resume
#: renders ``{{ trigger.* }}`` as the first attempt did (templates see it as ``trigger``).
TRIGGER_PARAM = "__trigger__"
#: ``{{ trigger }}`` of a run no trigger started (and of ``validate``'s preview).
NO_TRIGGER: dict[str, Any] = {
    "type": None,
    "path": "",
    "paths": [],
    "pipeline": None,
    "run_id": None,
    "status": None,
}
_AFTER_KEYS = ("pipeline", "status")


class UpstreamStatus(StrEnum):
    """How an upstream run must end for an ``after`` trigger to fire."""

    SUCCESS = "success"
    FAILED = "failed"
    ANY = "any"


@dataclass(frozen=True)
class FileTrigger:
    """Start a run for each new, stable file matching ``glob`` (one run for all, ``batch``)."""

    glob: str
    stable_for_s: float = DEFAULT_STABLE_FOR_S
    batch: bool = False

    @property
    def key(self) -> str:
        """The trigger's identity in the store (kept across edits of its other fields)."""
        return f"file:{self.glob}"

    def to_document(self) -> dict[str, Any]:
        """The trigger as it is written in a pipeline file."""
        return {"file": {"path": self.glob, "stable_for": self.stable_for_s, "batch": self.batch}}


@dataclass(frozen=True)
class AfterTrigger:
    """Start a run each time a run of ``pipeline`` ends with ``status``."""

    pipeline: str
    status: UpstreamStatus = UpstreamStatus.SUCCESS

    @property
    def key(self) -> str:
        """The trigger's identity in the store."""
        return f"after:{self.pipeline}:{self.status.value}"

    def to_document(self) -> dict[str, Any]:
        """The trigger as it is written in a pipeline file."""
        return {"after": {"pipeline": self.pipeline, "status": self.status.value}}


TriggerSpec = FileTrigger | AfterTrigger


def parse_triggers(value: Any, *, path: str | None = None) -> tuple[TriggerSpec, ...]:
    """Check a ``triggers`` list and return its triggers.

    Raises :class:`SpecErrors` listing every problem, each naming ``path`` and the
    field (``triggers[0].file.stable_for``, …) with the offending value.
    """
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise SpecErrors(
            [
                SpecError(
                    f"expected a list of triggers, got {_shown(value)}", path=path, field="triggers"
                )
            ]
        )
    errors: list[SpecError] = []
    triggers: list[TriggerSpec] = []
    for index, item in enumerate(value):
        where = f"triggers[{index}]"
        try:
            triggers.append(_one_trigger(item, where, path))
        except SpecErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise SpecErrors(errors)
    return tuple(triggers)


def _one_trigger(item: Any, where: str, path: str | None) -> TriggerSpec:
    if not isinstance(item, Mapping) or len(item) != 1:
        raise _errors(path, where, f"expected 'file: {{…}}' or 'after: {{…}}', got {_shown(item)}")
    kind, body = next(iter(item.items()))
    if kind not in ("file", "after"):
        raise _errors(path, f"{where}.{kind}", "unknown trigger (triggers: file, after)")
    if not isinstance(body, Mapping):
        raise _errors(path, f"{where}.{kind}", f"expected a mapping, got {_shown(body)}")
    known = _FILE_KEYS if kind == "file" else _AFTER_KEYS
    problems = [
        SpecError(
            f"unknown field ({kind} trigger fields: {', '.join(known)})",
            path=path,
            field=f"{where}.{kind}.{key}",
        )
        for key in body
        if key not in known
    ]
    try:
        trigger = _file_trigger(body, where, path) if kind == "file" else _after(body, where, path)
    except SpecErrors as exc:
        problems.extend(exc.errors)
    if problems:
        raise SpecErrors(problems)
    return trigger


def _file_trigger(body: Mapping[str, Any], where: str, path: str | None) -> FileTrigger:
    errors: list[SpecError] = []
    glob = body.get("path")
    if not isinstance(glob, str) or not glob.strip():
        errors.append(
            _error(
                path,
                f"{where}.file.path",
                f"expected a non-empty absolute glob, got {_shown(glob)}",
            )
        )
    elif not glob.startswith("/"):
        errors.append(
            _error(
                path,
                f"{where}.file.path",
                f"the glob must be an absolute path (start with /), got {glob!r}",
            )
        )
    elif len(glob) > MAX_GLOB_LENGTH:
        errors.append(
            _error(
                path, f"{where}.file.path", f"the glob can be at most {MAX_GLOB_LENGTH} characters"
            )
        )
    stable_for = DEFAULT_STABLE_FOR_S
    try:
        stable_for = parse_duration(
            body.get("stable_for", DEFAULT_STABLE_FOR_S), maximum=MAX_STABLE_FOR_S
        )
    except ValueError as exc:
        errors.append(_error(path, f"{where}.file.stable_for", str(exc)))
    batch = body.get("batch", False)
    if not isinstance(batch, bool):
        errors.append(
            _error(path, f"{where}.file.batch", f"expected true or false, got {_shown(batch)}")
        )
    if errors:
        raise SpecErrors(errors)
    return FileTrigger(str(glob), stable_for, bool(batch))


def _after(body: Mapping[str, Any], where: str, path: str | None) -> AfterTrigger:
    errors: list[SpecError] = []
    pipeline = body.get("pipeline")
    if not isinstance(pipeline, str) or not pipeline.strip():
        errors.append(
            _error(
                path, f"{where}.after.pipeline", f"expected a pipeline name, got {_shown(pipeline)}"
            )
        )
    status_text = body.get("status", UpstreamStatus.SUCCESS.value)
    status = UpstreamStatus.SUCCESS
    try:
        status = UpstreamStatus(status_text)
    except ValueError:
        errors.append(
            _error(
                path,
                f"{where}.after.status",
                f"unknown status {_shown(status_text)} (use success, failed or any)",
            )
        )
    if errors:
        raise SpecErrors(errors)
    return AfterTrigger(str(pipeline), status)


def trigger_graph_errors(
    triggers_by_pipeline: Mapping[str, Sequence[TriggerSpec]],
    paths: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """Each pipeline whose ``after`` triggers name an unknown pipeline or close a cycle,
    with a one-line error; ``triggers_by_pipeline`` must hold every known pipeline."""
    paths = paths or {}
    errors: dict[str, str] = {}
    upstreams = {
        name: [t.pipeline for t in triggers if isinstance(t, AfterTrigger)]
        for name, triggers in triggers_by_pipeline.items()
    }
    for name, names in upstreams.items():
        for upstream in names:
            if upstream not in upstreams:
                known = ", ".join(sorted(upstreams)) or "none"
                errors[name] = str(
                    SpecError(
                        f"no pipeline named {upstream!r} (pipelines: {known})",
                        path=paths.get(name),
                        field="triggers.after.pipeline",
                    )
                )
    for name in upstreams:
        cycle = _cycle_from(name, upstreams)
        if cycle and name not in errors:
            errors[name] = str(
                SpecError(
                    f"the after triggers form a cycle ({' -> '.join(cycle)}); remove one of them",
                    path=paths.get(name),
                    field="triggers.after.pipeline",
                )
            )
    return errors


def _cycle_from(start: str, upstreams: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The cycle of ``after`` links through ``start`` (start … start), or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, trail = stack.pop()
        for upstream in upstreams.get(name, ()):
            if upstream == start:
                return [*trail, start]
            if upstream not in seen:
                seen.add(upstream)
                stack.append((upstream, [*trail, upstream]))
    return None


def _error(path: str | None, field: str, message: str) -> SpecError:
    return SpecError(message, path=path, field=field)


def _errors(path: str | None, field: str, message: str) -> SpecErrors:
    return SpecErrors([_error(path, field, message)])


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = [
    "DEFAULT_STABLE_FOR_S",
    "NO_TRIGGER",
    "TRIGGER_PARAM",
    "AfterTrigger",
    "FileTrigger",
    "TriggerSpec",
    "UpstreamStatus",
    "parse_triggers",
    "trigger_graph_errors",
]
