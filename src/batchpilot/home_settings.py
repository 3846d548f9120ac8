"""``settings.yaml`` in the batchpilot home: the settings a team writes down once.

.. code-block:: yaml

    retention:
      older_than: 30d     # serve deletes ended runs older than this, daily
      keep_last: 10       # but keeps each pipeline's 10 most recent ended runs

Only ``retention`` is read today. The file is optional; ``BATCHPILOT_*``
variables override what it says (``BATCHPILOT_RETENTION`` wins over
``retention.older_than``). :func:`read_home_settings` raises
:class:`SettingsFileError` naming the file, the field and the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from batchpilot.errors import SettingsFileError
from batchpilot.spec.durations import parse_age

SETTINGS_FILE = "settings.yaml"
_SECTIONS = ("retention",)
_RETENTION_KEYS = ("older_than", "keep_last")
#: The most recent ended runs per pipeline ``keep_last`` may keep at most.
MAX_KEEP_LAST = 1_000_000


@dataclass(frozen=True)
class RetentionSettings:
    """``retention:``: delete ended runs older than ``older_than_s``, but keep each
    pipeline's ``keep_last`` most recent ended runs."""

    older_than_s: float
    keep_last: int = 0


@dataclass(frozen=True)
class HomeSettings:
    """What ``settings.yaml`` says (all None when there is no file)."""

    retention: RetentionSettings | None = None


def read_home_settings(home: Path) -> HomeSettings:
    """Read ``settings.yaml`` in ``home`` (none: the defaults). Raises
    :class:`SettingsFileError` for YAML that does not read, an unknown section or key,
    or a value that cannot be used."""
    path = home / SETTINGS_FILE
    if not path.exists():
        return HomeSettings()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SettingsFileError(f"invalid YAML: {str(exc).splitlines()[0]}", path=path) from None
    except OSError as exc:
        raise SettingsFileError(f"cannot be read: {exc.strerror}", path=path) from None
    if data is None:
        return HomeSettings()
    if not isinstance(data, dict):
        raise SettingsFileError(
            f"expected a mapping of sections ({', '.join(_SECTIONS)}), got {data!r}", path=path
        )
    for key in data:
        if key not in _SECTIONS:
            raise SettingsFileError(
                f"unknown section {key!r} (known: {', '.join(_SECTIONS)})", path=path, field=key
            )
    retention = data.get("retention")
    return HomeSettings(retention=_retention(retention, path) if retention is not None else None)


def _retention(value: Any, path: Path) -> RetentionSettings:
    if not isinstance(value, dict):
        raise SettingsFileError(
            f"expected a mapping of {', '.join(_RETENTION_KEYS)} (e.g. {{older_than: 30d}}), "
            f"got {value!r}",
            path=path,
            field="retention",
        )
    for key in value:
        if key not in _RETENTION_KEYS:
            raise SettingsFileError(
                f"unknown setting {key!r} (known: {', '.join(_RETENTION_KEYS)})",
                path=path,
                field=f"retention.{key}",
            )
    older_than = value.get("older_than")
    if older_than is None:
        raise SettingsFileError(
            "the age of the ended runs to delete is needed, e.g. older_than: 30d",
            path=path,
            field="retention.older_than",
        )
    try:
        older_than_s = parse_age(str(older_than))
    except ValueError as exc:
        raise SettingsFileError(str(exc), path=path, field="retention.older_than") from None
    keep_last = value.get("keep_last", 0)
    if (
        isinstance(keep_last, bool)
        or not isinstance(keep_last, int)
        or not 0 <= keep_last <= MAX_KEEP_LAST
    ):
        raise SettingsFileError(
            f"keep_last is a whole number of runs from 0 to {MAX_KEEP_LAST:,}, got {keep_last!r}",
            path=path,
            field="retention.keep_last",
        )
    return RetentionSettings(older_than_s, keep_last)


__all__ = [
    "SETTINGS_FILE",
    "HomeSettings",
    "RetentionSettings",
    "read_home_settings",
]
