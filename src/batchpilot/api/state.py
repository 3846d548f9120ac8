"""What the routes of one app share: the store, the engine's services, the pipelines."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from batchpilot.engine import RunService
from batchpilot.scheduler.catalog import CatalogEntry
from batchpilot.settings import Settings
from batchpilot.store import RunStore

if TYPE_CHECKING:
    from batchpilot.scheduler.commands import CommandSupervisor


@dataclass
class ApiState:
    """Held in ``app.state.api``; read by routes through :func:`api_state`."""

    settings: Settings
    store: RunStore
    service: RunService
    #: the pipeline files as last read by ``serve`` (a list replaced whole on each refresh)
    entries: Callable[[], list[CatalogEntry]]
    scheduling: bool
    stopping: threading.Event
    #: set after a run was queued, so ``serve``'s dispatcher starts it at once
    runs_queued: threading.Event = field(default_factory=threading.Event)
    #: ``serve``'s supervisor of side processes (backfills, compensations); None: not offered
    commands: CommandSupervisor | None = None
    #: seconds between two looks at the store by the event streams
    poll_s: float = 0.5
    #: seconds between two keep-alive comments on an idle event stream
    heartbeat_s: float = 10.0
    #: the IANA time zone "today" is read in (``/stats``; BATCHPILOT_TIMEZONE)
    timezone: str = "UTC"


async def api_state(request: Request) -> ApiState:
    """The shared state of the app serving ``request`` (async: FastAPI runs a sync
    dependency in its thread pool, a hand-off per request for reading an attribute)."""
    return request.app.state.api  # type: ignore[no-any-return]


T = TypeVar("T")


async def read_store(store: RunStore, read: Callable[[], T]) -> T:
    """``read()``, a short read of the store by an async route: on the event loop when the
    store is SQLite (a local file: the read is ~1 ms of CPU, and a hand-off to the thread
    pool and back costs about as much), in the thread pool when it is a database server
    (a round trip on the loop would stall every other request while it waits)."""
    if store.engine.dialect.name == "sqlite":
        return read()
    return await run_in_threadpool(read)


__all__ = ["ApiState", "api_state", "read_store"]
