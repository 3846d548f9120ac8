"""The dashboard's event stream (server-sent events): the store is looked at every
:data:`POLL_S` seconds and a ``change`` event is sent when what the page shows moved on,
so the page's script re-reads its live parts without a reload.

A run page follows its run (status, tasks' states and attempts); other pages follow
the newest runs and every queued or running one. Each of these marks is computed once
per interval for all the pages that follow it (:mod:`batchpilot.shared_poll`): fifty
open dashboards cost one query per interval, not fifty.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable

from batchpilot.errors import BatchpilotError
from batchpilot.shared_poll import SharedPoll, SharedPolls
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


def shared_marks(store: RunStore, *, poll_s: float = POLL_S) -> SharedPolls[str]:
    """The marks the open pages follow, each computed once per ``poll_s`` however many
    pages follow it: key ``None`` the runs (:func:`runs_mark`), a run id that run
    (:func:`run_mark`)."""

    def make(key: Hashable) -> SharedPoll[str]:
        if key is None:
            return SharedPoll(lambda: runs_mark(store), interval_s=poll_s, replay_latest=True)
        run_id = str(key)
        return SharedPoll(lambda: run_mark(store, run_id), interval_s=poll_s, replay_latest=True)

    return SharedPolls(make)


async def change_events(
    marks: SharedPolls[str],
    key: str | None,
    *,
    still_allowed: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """Server-sent events: a ``change`` event each time the mark of ``key`` in ``marks``
    (see :func:`shared_marks`) gives a new value, the first value included. Ends when
    ``still_allowed`` turns False (session ended, token revoked, client gone)."""
    last: str | None = None
    yield "retry: 2000\n\n"
    async with marks.listen(key) as queue:
        last_sent = last_check = time.monotonic()
        while True:
            if time.monotonic() - last_check >= RECHECK_S:
                last_check = time.monotonic()
                if not await still_allowed():
                    yield "event: logout\ndata: session ended\n\n"
                    return
            try:
                current = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S / 3)
            except TimeoutError:
                current = last
            if current != last:
                last = current
                last_sent = time.monotonic()
                yield f"event: change\ndata: {current}\n\n"
            elif time.monotonic() - last_sent >= KEEPALIVE_S:
                last_sent = time.monotonic()
                yield ": keepalive\n\n"


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


__all__ = ["POLL_S", "change_events", "run_mark", "runs_mark", "shared_marks"]
