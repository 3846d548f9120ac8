"""A pipeline's ``monitoring`` (which alert rules apply, with which thresholds) and ``notify``
(which channels each rule's alerts go to).

.. code-block:: yaml

    monitoring:
      slow: {factor: 3}            # true (default) | false | {factor: 1.1 .. 100}
      low_volume: {expected_rows: 5000, min_ratio: 0.8}   # or true | false
      rejects: false               # true | false | {max_ratio: 0 .. 1}
      failure: true
      missed_schedule: true        # slots the scheduler missed while serve was down
      deadline: "06:00"            # in the schedule's time zone; needs a schedule
      remind_every: 1h             # reminders while an alert is open (off by default)
    notify: {failure: [oncall], slow: data-team, recovery: [oncall], default: [data-team]}
    nodes:
      - id: load_users
        monitoring: {rejects: {max_ratio: 0.05}, slow: false, deadline: 20m}

Every rule is on by default. A node's ``monitoring`` may set ``slow``, ``rejects``
and ``low_volume`` for that task (``low_volume: false`` leaves a load out of the
pipeline's row count), and a ``deadline``: a duration counted from the run's start
by which the task must have succeeded. :func:`parse_monitoring` and :func:`parse_notify` raise
:class:`SpecErrors` naming the file, the field and the value; channel names are
checked against the defined channels later, at the edge (they are not in the file).
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from typing import Any

from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec.durations import parse_duration

DEFAULT_SLOW_FACTOR = 2.0
MIN_SLOW_FACTOR = 1.0
MAX_SLOW_FACTOR = 100.0
DEFAULT_MIN_VOLUME_RATIO = 0.8
DEFAULT_MAX_REJECT_RATIO = 0.01
#: Successful runs the baselines (mean duration, mean rows) are taken over.
HISTORY_RUNS = 10
#: Fewer successful runs than this: no baseline yet, ``slow`` and ``low_volume`` stay quiet.
MIN_HISTORY_RUNS = 3
#: The shortest ``remind_every`` accepted (a reminder storm is what episodes prevent).
MIN_REMIND_EVERY_S = 60.0
#: The rules, as written under ``monitoring:`` and in ``notify:`` routes.
RULES = ("slow", "low_volume", "rejects", "failure", "deadline", "missed_schedule")
#: Route names beside the rules: the recovery notice, and where unrouted rules go.
ROUTE_KEYS = (*RULES, "recovery", "default")
_PIPELINE_KEYS = (*RULES, "remind_every")
_NODE_KEYS = ("slow", "low_volume", "rejects", "deadline")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class SlowRule:
    """A run (or task) slower than ``factor`` x the mean of its last successful runs."""

    enabled: bool = True
    factor: float = DEFAULT_SLOW_FACTOR


@dataclass(frozen=True)
class LowVolumeRule:
    """Rows written by loads below ``min_ratio`` x expected (``expected_rows`` or the mean)."""

    enabled: bool = True
    min_ratio: float = DEFAULT_MIN_VOLUME_RATIO
    expected_rows: int | None = None


@dataclass(frozen=True)
class RejectsRule:
    """Rejected / rows in above ``max_ratio`` at any task."""

    enabled: bool = True
    max_ratio: float = DEFAULT_MAX_REJECT_RATIO


@dataclass(frozen=True)
class NodeMonitoring:
    """A task's own settings (None: the pipeline's)."""

    slow: SlowRule | None = None
    low_volume: bool = True
    rejects: RejectsRule | None = None
    #: seconds from the run's start by which the task must have succeeded (None: no deadline)
    deadline_s: float | None = None


@dataclass(frozen=True)
class MonitoringSpec:
    """The rules of one pipeline, defaults filled in."""

    slow: SlowRule = field(default_factory=SlowRule)
    low_volume: LowVolumeRule = field(default_factory=LowVolumeRule)
    rejects: RejectsRule = field(default_factory=RejectsRule)
    failure: bool = True
    missed_schedule: bool = True
    deadline: time | None = None
    remind_every_s: float | None = None
    nodes: Mapping[str, NodeMonitoring] = field(default_factory=dict)

    def node(self, node_id: str) -> NodeMonitoring:
        """The task's own settings (all None when it has none)."""
        return self.nodes.get(node_id, NodeMonitoring())

    def slow_rule_of(self, node_id: str) -> SlowRule:
        """The ``slow`` rule that applies to a task."""
        return self.node(node_id).slow or self.slow

    def rejects_rule_of(self, node_id: str) -> RejectsRule:
        """The ``rejects`` rule that applies to a task."""
        return self.node(node_id).rejects or self.rejects

    def to_document(self) -> dict[str, Any]:
        """The pipeline-level ``monitoring:`` as written in a file (node parts excluded)."""
        document: dict[str, Any] = {
            "slow": {"factor": self.slow.factor} if self.slow.enabled else False,
            "low_volume": _volume_document(self.low_volume),
            "rejects": {"max_ratio": self.rejects.max_ratio} if self.rejects.enabled else False,
            "failure": self.failure,
        }
        if not self.missed_schedule:
            document["missed_schedule"] = False
        if self.deadline is not None:
            document["deadline"] = self.deadline.strftime("%H:%M")
        if self.remind_every_s is not None:
            document["remind_every"] = self.remind_every_s
        return document

    def node_document(self, node_id: str) -> dict[str, Any] | None:
        """A node's ``monitoring:`` as written in a file, None when it has none."""
        own = self.nodes.get(node_id)
        if own is None:
            return None
        document: dict[str, Any] = {}
        if own.slow is not None:
            document["slow"] = {"factor": own.slow.factor} if own.slow.enabled else False
        if own.rejects is not None:
            document["rejects"] = (
                {"max_ratio": own.rejects.max_ratio} if own.rejects.enabled else False
            )
        if not own.low_volume:
            document["low_volume"] = False
        if own.deadline_s is not None:
            document["deadline"] = own.deadline_s
        return document

    def task_deadlines(self) -> dict[str, float]:
        """Task id → seconds from the run's start, for the tasks with a ``deadline``."""
        return {
            node_id: own.deadline_s
            for node_id, own in self.nodes.items()
            if own.deadline_s is not None
        }


def _volume_document(rule: LowVolumeRule) -> dict[str, Any] | bool:
    if not rule.enabled:
        return False
    document: dict[str, Any] = {"min_ratio": rule.min_ratio}
    if rule.expected_rows is not None:
        document["expected_rows"] = rule.expected_rows
    return document


#: A pipeline's routes: rule (or ``recovery`` / ``default``) → channel names.
Routes = Mapping[str, tuple[str, ...]]


class _Errors:
    """Collects the problems of one section, each naming the file, node, field and value."""

    def __init__(self, path: str | None, node_id: str | None = None) -> None:
        self.path, self.node_id, self.errors = path, node_id, list[SpecError]()

    def add(self, field_name: str, message: str) -> None:
        self.errors.append(
            SpecError(message, path=self.path, node_id=self.node_id, field=field_name)
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _mapping_or_switch(
    value: Any, name: str, keys: tuple[str, ...], errors: _Errors
) -> Mapping[str, Any] | None:
    """``true`` → {}, ``false`` → None, a mapping checked for unknown keys."""
    if value is True:
        return {}
    if value is False:
        return None
    if not isinstance(value, Mapping):
        errors.add(name, f"expected true, false or a mapping of {', '.join(keys)}, got {value!r}")
        return {}
    for key in value:
        if key not in keys:
            errors.add(f"{name}.{key}", f"unknown setting {key!r} (known: {', '.join(keys)})")
    return value


def _slow(value: Any, prefix: str, errors: _Errors) -> SlowRule:
    settings = _mapping_or_switch(value, f"{prefix}slow", ("factor",), errors)
    if settings is None:
        return SlowRule(enabled=False)
    factor = settings.get("factor", DEFAULT_SLOW_FACTOR)
    number = _number(factor)
    if number is None or not MIN_SLOW_FACTOR < number <= MAX_SLOW_FACTOR:
        errors.add(
            f"{prefix}slow.factor",
            f"a slow factor must be a number above {MIN_SLOW_FACTOR:g} and at most "
            f"{MAX_SLOW_FACTOR:g} (2 means twice the usual duration), got {factor!r}",
        )
        return SlowRule()
    return SlowRule(factor=number)


def _rejects(value: Any, prefix: str, errors: _Errors) -> RejectsRule:
    settings = _mapping_or_switch(value, f"{prefix}rejects", ("max_ratio",), errors)
    if settings is None:
        return RejectsRule(enabled=False)
    ratio = settings.get("max_ratio", DEFAULT_MAX_REJECT_RATIO)
    number = _number(ratio)
    if number is None or not 0 <= number < 1:
        errors.add(
            f"{prefix}rejects.max_ratio",
            f"a reject ratio must be a number from 0 to below 1 (0.01 is 1%), got {ratio!r}",
        )
        return RejectsRule()
    return RejectsRule(max_ratio=number)


def _low_volume(value: Any, errors: _Errors) -> LowVolumeRule:
    settings = _mapping_or_switch(value, "low_volume", ("min_ratio", "expected_rows"), errors)
    if settings is None:
        return LowVolumeRule(enabled=False)
    rule = LowVolumeRule()
    ratio = settings.get("min_ratio", DEFAULT_MIN_VOLUME_RATIO)
    number = _number(ratio)
    if number is None or not 0 < number <= 1:
        errors.add(
            "low_volume.min_ratio",
            f"a volume ratio must be a number above 0 and at most 1 (0.8 is 80%), got {ratio!r}",
        )
    else:
        rule = replace(rule, min_ratio=number)
    expected = settings.get("expected_rows")
    if expected is not None:
        if isinstance(expected, bool) or not isinstance(expected, int) or expected < 1:
            errors.add(
                "low_volume.expected_rows",
                f"expected_rows must be a whole number of rows, 1 or more, got {expected!r}",
            )
        else:
            rule = replace(rule, expected_rows=expected)
    return rule


def parse_deadline(value: Any) -> time:
    """``"06:00"`` → 06:00; raises ``ValueError`` naming the value for anything else."""
    match = _TIME.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'a deadline is a time of day written HH:MM (e.g. "06:00"), got {value!r}')
    return time(int(match.group(1)), int(match.group(2)))


def parse_monitoring(
    value: Any,
    *,
    path: str | None,
    nodes: Mapping[str, Any] | None = None,
    has_schedule: bool = False,
) -> MonitoringSpec:
    """Check a pipeline's ``monitoring:`` (None: every rule with its defaults) and its
    nodes' (``nodes``: node id → the node's ``monitoring:`` value).

    Raises :class:`SpecErrors` listing each bad rule, key or value.
    """
    errors = _Errors(path)
    spec = MonitoringSpec()
    if value is not None and not isinstance(value, Mapping):
        errors.add("monitoring", f"expected a mapping of rules ({', '.join(RULES)}), got {value!r}")
        value = None
    for key, setting in (value or {}).items():
        name = f"monitoring.{key}"
        if key not in _PIPELINE_KEYS:
            errors.add(name, f"unknown rule {key!r} (known: {', '.join(_PIPELINE_KEYS)})")
        elif key == "slow":
            spec = replace(spec, slow=_slow(setting, "monitoring.", errors))
        elif key == "rejects":
            spec = replace(spec, rejects=_rejects(setting, "monitoring.", errors))
        elif key == "low_volume":
            scoped = _Errors(path)
            spec = replace(spec, low_volume=_low_volume(setting, scoped))
            for error in scoped.errors:
                errors.add(f"monitoring.{error.field}", error.reason)
        elif key in ("failure", "missed_schedule"):
            if not isinstance(setting, bool):
                errors.add(name, f"expected true or false, got {setting!r}")
            else:
                spec = replace(spec, **{key: setting})
        elif key == "deadline":
            if setting is False or setting is None:
                continue
            try:
                spec = replace(spec, deadline=parse_deadline(setting))
            except ValueError as exc:
                errors.add(name, str(exc))
                continue
            if not has_schedule:
                errors.add(
                    name,
                    f"deadline {setting!r} needs a schedule (it is the time the slot's run "
                    "must have succeeded by, in the schedule's time zone)",
                )
        elif key == "remind_every":
            spec = replace(spec, remind_every_s=_remind_every(setting, errors))
    node_settings = {}
    for node_id, setting in (nodes or {}).items():
        if setting is None:
            continue
        parsed = _node(setting, _Errors(path, node_id))
        errors.errors.extend(parsed[1])
        node_settings[node_id] = parsed[0]
    if errors.errors:
        raise SpecErrors(errors.errors)
    return replace(spec, nodes=node_settings)


def _remind_every(value: Any, errors: _Errors) -> float | None:
    if value is False or value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        errors.add("monitoring.remind_every", str(exc))
        return None
    if seconds < MIN_REMIND_EVERY_S:
        errors.add(
            "monitoring.remind_every",
            f"reminders can be at most one a minute (remind_every: 1m or more), got {value!r}",
        )
        return None
    return seconds


def _node(value: Any, errors: _Errors) -> tuple[NodeMonitoring, list[SpecError]]:
    if not isinstance(value, Mapping):
        errors.add("monitoring", f"expected a mapping of {', '.join(_NODE_KEYS)}, got {value!r}")
        return NodeMonitoring(), errors.errors
    node = NodeMonitoring()
    for key, setting in value.items():
        if key not in _NODE_KEYS:
            errors.add(
                f"monitoring.{key}",
                f"unknown rule {key!r} for a task (known: {', '.join(_NODE_KEYS)})",
            )
        elif key == "slow":
            node = replace(node, slow=_slow(setting, "monitoring.", errors))
        elif key == "rejects":
            node = replace(node, rejects=_rejects(setting, "monitoring.", errors))
        elif key == "deadline":
            node = replace(node, deadline_s=_task_deadline(setting, errors))
        elif not isinstance(setting, bool):
            errors.add("monitoring.low_volume", f"expected true or false, got {setting!r}")
        else:
            node = replace(node, low_volume=setting)
    return node, errors.errors


def _task_deadline(value: Any, errors: _Errors) -> float | None:
    if value is False or value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        errors.add(
            "monitoring.deadline",
            "a task's deadline is a duration counted from the run's start, above 0 and at "
            f"most 7 days (e.g. 20m, 1h30m), got {value!r}",
        )
        return None
    return seconds


def parse_notify(value: Any, *, path: str | None) -> dict[str, tuple[str, ...]] | None:
    """Check a pipeline's ``notify:`` routes (None when absent): each key a rule,
    ``recovery`` or ``default``, each value a channel name or a list of them.

    Raises :class:`SpecErrors` naming the route and the value.
    """
    if value is None:
        return None
    errors = _Errors(path)
    if not isinstance(value, Mapping):
        errors.add("notify", f"expected a mapping of rule to channels, got {value!r}")
        raise SpecErrors(errors.errors)
    routes: dict[str, tuple[str, ...]] = {}
    for key, channels in value.items():
        name = f"notify.{key}"
        if key not in ROUTE_KEYS:
            errors.add(name, f"unknown route {key!r} (known: {', '.join(ROUTE_KEYS)})")
            continue
        names = [channels] if isinstance(channels, str) else channels
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            errors.add(name, f"expected a channel name or a list of them, got {channels!r}")
            continue
        routes[str(key)] = tuple(n.strip() for n in names)
    if errors.errors:
        raise SpecErrors(errors.errors)
    return routes


def check_routes(
    routes: Mapping[str, tuple[str, ...]] | None, defined: Container[str], *, path: str | None
) -> None:
    """Raise :class:`SpecErrors` naming the file, each route and each channel it names that
    is not in ``defined`` (the channels of the home and the environment)."""
    errors = [
        SpecError(
            f"unknown notification channel {name!r}: define it in notifications.yaml in the "
            "batchpilot home or with BATCHPILOT_NOTIFY_<NAME>=<url>",
            path=path,
            field=f"notify.{route}",
        )
        for route, names in (routes or {}).items()
        for name in names
        if name not in defined
    ]
    if errors:
        raise SpecErrors(errors)


__all__ = [
    "HISTORY_RUNS",
    "MIN_HISTORY_RUNS",
    "ROUTE_KEYS",
    "RULES",
    "LowVolumeRule",
    "MonitoringSpec",
    "NodeMonitoring",
    "RejectsRule",
    "Routes",
    "SlowRule",
    "check_routes",
    "parse_deadline",
    "parse_monitoring",
    "parse_notify",
]
