"""One look at the store per interval, however many event streams are open.

The API's ``/api/v1/events`` and the dashboard's ``/ui/events`` tell browsers and
programs what changed by polling the store. Polled once per client, fifty open
dashboards cost fifty queries every half second. A :class:`SharedPoll` runs its
blocking ``poll`` in a thread once per interval while at least one listener is
subscribed, and hands each result to every listener; it stops when the last one
leaves. :class:`SharedPolls` keeps one per key (the dashboard's run pages: one per run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class SharedPoll(Generic[T]):
    """Calls ``poll`` every ``interval_s`` seconds while anyone listens; each listener
    receives every result from the moment it subscribed.

    ``replay_latest``: a new listener first receives the latest result (a state, such
    as a digest of what a page shows); otherwise only the results of later polls (a
    stream of changes, where the first poll only takes the baseline).
    """

    def __init__(
        self, poll: Callable[[], T], *, interval_s: float, replay_latest: bool = False
    ) -> None:
        self._poll = poll
        self.interval_s = interval_s
        self.replay_latest = replay_latest
        self._queues: set[asyncio.Queue[T]] = set()
        self._task: asyncio.Task[None] | None = None
        self._latest: T | None = None
        self._lock: asyncio.Lock | None = None
        #: how many times ``poll`` ran (one per interval, not one per listener)
        self.polls = 0

    @property
    def listeners(self) -> int:
        """How many listeners are subscribed."""
        return len(self._queues)

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[T]]:
        """Subscribe: a queue that receives each poll's result until the block exits.

        The first listener's subscription polls once before it returns (so whatever
        happens after it is a change to what was seen); a poll that raises is logged
        and retried at the next interval.
        """
        queue: asyncio.Queue[T] = asyncio.Queue()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._task is None:
                self._latest = await asyncio.to_thread(self._counted_poll)
                self._task = asyncio.create_task(self._run())
            if self.replay_latest:
                queue.put_nowait(self._latest)  # type: ignore[arg-type]
            self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
            if not self._queues and self._task is not None:
                self._task.cancel()
                self._task = None
                self._latest = None

    def _counted_poll(self) -> T:
        self.polls += 1
        return self._poll()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                result = await asyncio.to_thread(self._counted_poll)
            except Exception:  # the stream goes on; the next interval tries again
                log.warning("polling the store for events failed", exc_info=True)
                continue
            self._latest = result
            for queue in list(self._queues):
                queue.put_nowait(result)


class SharedPolls(Generic[T]):
    """One :class:`SharedPoll` per key, made by ``make(key)`` on first use and dropped
    when its last listener leaves."""

    def __init__(self, make: Callable[[Hashable], SharedPoll[T]]) -> None:
        self._make = make
        self._polls: dict[Hashable, SharedPoll[T]] = {}

    @asynccontextmanager
    async def listen(self, key: Hashable) -> AsyncIterator[asyncio.Queue[T]]:
        """Subscribe to the poll of ``key`` (see :meth:`SharedPoll.listen`)."""
        shared = self._polls.get(key)
        if shared is None:
            shared = self._polls[key] = self._make(key)
        try:
            async with shared.listen() as queue:
                yield queue
        finally:
            if shared.listeners == 0 and self._polls.get(key) is shared:
                del self._polls[key]

    def get(self, key: Hashable) -> SharedPoll[T] | None:
        """The poll of ``key`` while anyone listens to it."""
        return self._polls.get(key)


__all__ = ["SharedPoll", "SharedPolls"]
