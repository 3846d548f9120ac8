"""What the dashboard is built from: the store, the engine's services, the pipelines
``serve`` knows, and a few settings, passed in by whoever hosts it (``serve``, a test)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from batchpilot.engine import RunService
from batchpilot.errors import BatchpilotError
from batchpilot.scheduler.catalog import CatalogEntry
from batchpilot.store import RunStore
from batchpilot.ui.actions import Dispatch, hand_to_serve

TIMEZONE_VARIABLE = "BATCHPILOT_TIMEZONE"
#: Idle minutes after which a dashboard session ends (the token is checked on every request).
DEFAULT_SESSION_IDLE_MINUTES = 12 * 60


@dataclass(frozen=True)
class DashboardSettings:
    """The dashboard's settings: the time zone "today" is read in, session idle time."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    session_idle_minutes: int = DEFAULT_SESSION_IDLE_MINUTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DashboardSettings:
        """Read ``BATCHPILOT_TIMEZONE`` (an IANA name such as ``Europe/Paris``; default UTC).
        Raises :class:`BatchpilotError` naming the variable for an unknown zone."""
        env = os.environ if environ is None else environ
        name = (env.get(TIMEZONE_VARIABLE) or "UTC").strip()
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise BatchpilotError(
                f"{TIMEZONE_VARIABLE} must be an IANA time zone such as Europe/Paris, got {name!r}"
            ) from None
        return cls(timezone=zone)


@dataclass(frozen=True)
class OpenAlert:
    """An alert episode still open, as the overview lists it."""

    title: str
    pipeline: str | None = None
    severity: str = "warning"
    since: datetime | None = None
    href: str | None = None


def _no_pipelines() -> list[CatalogEntry]:
    return []


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DashboardContext:
    """Everything the pages read and act through.

    ``pipelines`` gives serve's catalog entries (schedules, next runs);
    ``alerts`` the open alerts (None until the monitor keeps alerts: the
    overview then says so); ``dispatch`` hands a run queued by a button to
    the worker pool (by default nothing: ``serve`` picks queued runs up
    from the store); ``clock`` gives the current aware time.
    """

    store: RunStore
    service: RunService
    settings: DashboardSettings = field(default_factory=DashboardSettings)
    pipelines: Callable[[], list[CatalogEntry]] = _no_pipelines
    alerts: Callable[[], list[OpenAlert]] | None = None
    dispatch: Dispatch = hand_to_serve
    clock: Callable[[], datetime] = _utc_now


__all__ = [
    "DEFAULT_SESSION_IDLE_MINUTES",
    "TIMEZONE_VARIABLE",
    "DashboardContext",
    "DashboardSettings",
    "OpenAlert",
]
