"""Settings read once at the edge (CLI, Python API) from ``BATCHPILOT_*`` variables and the
home's ``settings.yaml`` (:mod:`batchpilot.home_settings`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchpilot.connections import ConnectionRegistry
from batchpilot.errors import BatchpilotError, SpecError
from batchpilot.home_settings import read_home_settings
from batchpilot.s3.location import S3Endpoint, S3Url, parse_s3_url
from batchpilot.spec.durations import parse_age
from batchpilot.spec.limits import MAX_WORKERS, check_workers
from batchpilot.spec.output_paths import OUTPUT_ROOTS_VARIABLE

DEFAULT_WORKERS = 4
WORKERS_VARIABLE = "BATCHPILOT_WORKERS"
DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_STALE_AFTER_S = 30.0
LOGS_URL_VARIABLE = "BATCHPILOT_LOGS_URL"
LOGS_SHIP_INTERVAL_VARIABLE = "BATCHPILOT_LOGS_SHIP_INTERVAL"
#: how often a running attempt's new log lines are shipped: a kill -9 loses at most this much
DEFAULT_LOGS_SHIP_INTERVAL_S = 30.0
MAX_LOGS_SHIP_INTERVAL_S = 300.0
RETENTION_VARIABLE = "BATCHPILOT_RETENTION"
#: where ``batchpilot serve`` listens for the REST API and the dashboard
DEFAULT_SERVE_HOST = "127.0.0.1"
DEFAULT_SERVE_PORT = 8765


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
    #: where attempt logs are shipped besides the run folder (None: this machine only)
    logs_url: S3Url | None = None
    #: the S3 API ``logs_url`` lives on (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION)
    s3_endpoint: S3Endpoint = field(default_factory=S3Endpoint)
    logs_ship_interval_s: float = DEFAULT_LOGS_SHIP_INTERVAL_S
    #: ``serve`` deletes ended runs older than this many seconds, daily; None: keeps all
    retention_s: float | None = None
    #: ... but keeps each pipeline's this many most recent ended runs
    retention_keep_last: int = 0

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
        ``BATCHPILOT_OUTPUT_ROOTS``, ``BATCHPILOT_RETENTION``, ``BATCHPILOT_CONN_*`` (plus
        the home's connections file), ``BATCHPILOT_LOGS_URL`` and
        ``BATCHPILOT_LOGS_SHIP_INTERVAL`` (with the AWS endpoint and region variables), and
        ``settings.yaml`` in the home (``retention:``; the variables win).
        Raises :class:`BatchpilotError` naming the variable for a value that cannot be
        used, :class:`SettingsFileError` naming the file and field."""
        env = os.environ if environ is None else environ
        home = Path(env.get("BATCHPILOT_HOME") or Path.home() / ".batchpilot").expanduser()
        written = read_home_settings(home)
        retention_s = parse_retention(env.get(RETENTION_VARIABLE))
        if retention_s is None and written.retention is not None:
            retention_s = written.retention.older_than_s
        return cls(
            home=home,
            database_url=env.get("BATCHPILOT_DATABASE_URL") or None,
            workers=parse_workers(env.get(WORKERS_VARIABLE)),
            connections=ConnectionRegistry.from_sources(env, home),
            extra_output_roots=parse_output_roots(env.get(OUTPUT_ROOTS_VARIABLE, "")),
            **_remote_logs(env),
            retention_s=retention_s,
            retention_keep_last=written.retention.keep_last if written.retention else 0,
        )


def _remote_logs(env: Mapping[str, str]) -> dict[str, object]:
    text = env.get(LOGS_URL_VARIABLE, "").strip()
    if not text:
        return {}
    return {
        "logs_url": parse_s3_url(text, variable=LOGS_URL_VARIABLE),
        "s3_endpoint": S3Endpoint.from_env(env),
        "logs_ship_interval_s": parse_ship_interval(env.get(LOGS_SHIP_INTERVAL_VARIABLE)),
    }


def parse_ship_interval(text: str | None) -> float:
    """The seconds between two shipments of a running attempt's log that
    ``BATCHPILOT_LOGS_SHIP_INTERVAL`` sets (unset or empty:
    :data:`DEFAULT_LOGS_SHIP_INTERVAL_S`).

    Raises :class:`BatchpilotError` naming the variable for anything but a
    number of seconds above 0 and at most :data:`MAX_LOGS_SHIP_INTERVAL_S`.
    """
    if text is None or not text.strip():
        return DEFAULT_LOGS_SHIP_INTERVAL_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= MAX_LOGS_SHIP_INTERVAL_S:  # also false for nan
        raise BatchpilotError(
            f"{LOGS_SHIP_INTERVAL_VARIABLE} must be a number of seconds above 0 and at most "
            f"{MAX_LOGS_SHIP_INTERVAL_S:g}, got {text!r}"
        )
    return seconds


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
