"""Settings read once at the edge (CLI, Python API) from ``BATCHPILOT_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchpilot.connections import ConnectionRegistry
from batchpilot.errors import BatchpilotError, SpecError
from batchpilot.spec.durations import parse_age
from batchpilot.spec.limits import MAX_WORKERS, check_workers
from batchpilot.spec.output_paths import OUTPUT_ROOTS_VARIABLE

DEFAULT_WORKERS = 4
WORKERS_VARIABLE = "BATCHPILOT_WORKERS"
DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_STALE_AFTER_S = 30.0
RETENTION_VARIABLE = "BATCHPILOT_RETENTION"


@dataclass(frozen=True)
class Settings:
    """Where state lives and how runs execute; built by :meth:`from_env` or by hand."""

    home: Path
    database_url: str | None = None
    workers: int = DEFAULT_WORKERS
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    connections: ConnectionRegistry = field(default_factory=ConnectionRegistry)
    #: folders besides the pipeline's own and the home that steps may write under
    extra_output_roots: tuple[Path, ...] = ()
    #: ``serve`` deletes ended runs older than this many seconds, daily; None: keeps all
    retention_s: float | None = None

    @property
    def runs_dir(self) -> Path:
        """Folder holding each run's artifacts and logs."""
        return self.home / "runs"

    @property
    def output_roots(self) -> tuple[Path, ...]:
        """Where a step's output path may lie besides the pipeline's folder: the home,
        then the folders of ``BATCHPILOT_OUTPUT_ROOTS``."""
        return (self.home, *self.extra_output_roots)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``BATCHPILOT_HOME``, ``BATCHPILOT_DATABASE_URL``, ``BATCHPILOT_WORKERS``,
        ``BATCHPILOT_OUTPUT_ROOTS``, ``BATCHPILOT_RETENTION`` and ``BATCHPILOT_CONN_*``
        (plus the home's connections file). Raises :class:`BatchpilotError` for a value
        that cannot be used."""
        env = os.environ if environ is None else environ
        home = Path(env.get("BATCHPILOT_HOME") or Path.home() / ".batchpilot").expanduser()
        return cls(
            home=home,
            database_url=env.get("BATCHPILOT_DATABASE_URL") or None,
            workers=parse_workers(env.get(WORKERS_VARIABLE)),
            connections=ConnectionRegistry.from_sources(env, home),
            extra_output_roots=parse_output_roots(env.get(OUTPUT_ROOTS_VARIABLE, "")),
            retention_s=parse_retention(env.get(RETENTION_VARIABLE)),
        )


def parse_workers(text: str | None) -> int:
    """The number of tasks run in parallel that ``BATCHPILOT_WORKERS`` sets (unset or
    empty: :data:`DEFAULT_WORKERS`).

    Raises :class:`BatchpilotError` naming the variable and the range allowed (the
    bounds of ``--workers``) for anything but a whole number from 1 to
    :data:`~batchpilot.spec.limits.MAX_WORKERS`.
    """
    if text is None or not text.strip():
        return DEFAULT_WORKERS
    try:
        workers = int(text)
        check_workers(workers)
    except (ValueError, SpecError):
        raise BatchpilotError(
            f"{WORKERS_VARIABLE} must be a whole number from 1 to {MAX_WORKERS}, got {text!r}"
        ) from None
    return workers


def parse_retention(text: str | None) -> float | None:
    """The age in seconds past which ``serve`` deletes ended runs (``BATCHPILOT_RETENTION``,
    e.g. ``30d``); None when unset or empty.

    Raises :class:`BatchpilotError` naming the variable and the value for anything
    :func:`~batchpilot.spec.durations.parse_age` refuses (``30x``, ``-1d``, ``30``).
    """
    if text is None or not text.strip():
        return None
    try:
        return parse_age(text)
    except ValueError as exc:
        raise BatchpilotError(f"{RETENTION_VARIABLE}: {exc}") from None


def parse_output_roots(text: str) -> tuple[Path, ...]:
    """The absolute folders of an ``os.pathsep``-separated list (empty entries skipped).

    Raises :class:`BatchpilotError` for a relative folder, whose meaning would
    change with the working folder.
    """
    roots = []
    for entry in text.split(os.pathsep):
        if not entry.strip():
            continue
        root = Path(entry.strip()).expanduser()
        if not root.is_absolute():
            raise BatchpilotError(
                f"{OUTPUT_ROOTS_VARIABLE} must list absolute folders separated by "
                f"'{os.pathsep}', got the relative folder {entry!r}"
            )
        roots.append(root)
    return tuple(roots)
