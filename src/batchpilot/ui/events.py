"""The dashboard's event stream (server-sent events): the store is looked at every
:data:`POLL_S` seconds and a ``change`` event is sent when what the page shows moved on,
so the page's script re-reads its live parts without a reload.

A run page follows its run (status, tasks' states and attempts); other pages follow
the newest runs and every queued or running one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.concurrency import run_in_threadpool

from batchpilot.errors import BatchpilotError
from batchpilot.store import RunStore

POLL_S = 0.5
#: A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15.0
#: The session and token are checked again this often.
RECHECK_S = 5.0


def run_mark(store: RunStore, run_id: str) -> str:
    """A digest of what the run page shows of ``run_id`` that changes with it."""
    try:
        run = store.get_run(run_id)
        tasks = store.get_tasks(run.run_id)
        attempts = store.get_attempts(run.run_id)
    except BatchpilotError as exc:
        return f"error:{type(exc).__name__}"
    parts = [run.status.value, str(run.needs_attention), str(run.ended_at)]
    parts += [f"{t.task_id}={t.state.value}/{t.attempts}/{t.rows_out}" for t in tasks]
    parts += [f"{a.task_id}#{a.attempt}{a.kind}={a.state.value}" for a in attempts]
    return _digest(parts)


def runs_mark(store: RunStore) -> str:
    """A digest of the newest and the active runs' states."""
    return _digest([f"{r}|{s}|{e}" for r, s, e in store.queries.recent_marks()])


async def change_events(
    mark: Callable[[], str],
    *,
    still_allowed: Callable[[], Awaitable[bool]],
    poll_s: float = POLL_S,
) -> AsyncIterator[str]:
    """Server-sent events: a ``change`` event each time ``mark`` (run in a thread) gives a
    new value, the first value included. Ends when ``still_allowed`` turns False
    (session ended, token revoked, client gone)."""
    last: str | None = None
    since_keepalive = 0.0
    since_check = 0.0
    yield "retry: 2000\n\n"
    while True:
        if since_check >= RECHECK_S:
            since_check = 0.0
            if not await still_allowed():
                yield "event: logout\ndata: session ended\n\n"
                return
        current = await run_in_threadpool(mark)
        if current != last:
            last = current
            since_keepalive = 0.0
            yield f"event: change\ndata: {current}\n\n"
        elif since_keepalive >= KEEPALIVE_S:
            since_keepalive = 0.0
            yield ": keepalive\n\n"
        await asyncio.sleep(poll_s)
        since_keepalive += poll_s
        since_check += poll_s


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


__all__ = ["POLL_S", "change_events", "run_mark", "runs_mark"]
