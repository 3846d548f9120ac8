"""Server-sent events: the wire format, and a stream that polls until done or stopping.

A stream is an async generator of already-formatted frames. :func:`polled_stream`
calls a blocking ``poll`` (store reads) in a thread every ``poll_s``, sends
what it returns, a keep-alive comment when nothing was sent for ``heartbeat_s``,
and ends when ``poll`` says so or the server is stopping. :func:`shared_stream` sends
what a :class:`~batchpilot.shared_poll.SharedPoll` gives every listener (the run events:
one look at the store per interval for every open stream).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from batchpilot.shared_poll import SharedPoll

EVENT_STREAM = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_frame(event: str, data: str | dict[str, Any]) -> str:
    """One event: ``event:`` then a ``data:`` line per line of ``data`` (JSON for a dict)."""
    text = json.dumps(data, separators=(",", ":")) if isinstance(data, dict) else data
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"event: {event}\n{lines}\n"


KEEP_ALIVE = ": keep-alive\n\n"

#: ``poll()`` returns the frames to send and whether the stream is over.
Poll = Callable[[], tuple[list[str], bool]]


async def polled_stream(
    poll: Poll, *, poll_s: float, heartbeat_s: float, stopping: threading.Event
) -> AsyncIterator[str]:
    """Frames from ``poll`` until it reports the end or ``stopping`` is set."""
    # The first look is taken before the stream shows open, so anything the client does
    # once it sees the stream open is a change to the state seen then.
    frames, done = await asyncio.to_thread(poll)
    yield KEEP_ALIVE
    last_sent = time.monotonic()
    while True:
        for frame in frames:
            yield frame
        if frames:
            last_sent = time.monotonic()
        if done:
            return
        if time.monotonic() - last_sent >= heartbeat_s:
            yield KEEP_ALIVE
            last_sent = time.monotonic()
        await asyncio.sleep(poll_s)
        if stopping.is_set():
            return
        frames, done = await asyncio.to_thread(poll)


async def shared_stream(
    shared: SharedPoll[list[str]], *, heartbeat_s: float, stopping: threading.Event
) -> AsyncIterator[str]:
    """The frames of each of ``shared``'s polls from now on, with keep-alive comments,
    until the server is stopping (the stream shows open once the shared poll has its
    first look, as with :func:`polled_stream`)."""
    async with shared.listen() as queue:
        yield KEEP_ALIVE
        last_sent = time.monotonic()
        while not stopping.is_set():
            try:
                frames = await asyncio.wait_for(queue.get(), timeout=shared.interval_s)
            except TimeoutError:
                frames = []
            for frame in frames:
                yield frame
            if frames:
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= heartbeat_s:
                yield KEEP_ALIVE
                last_sent = time.monotonic()


__all__ = [
    "EVENT_STREAM",
    "KEEP_ALIVE",
    "SSE_HEADERS",
    "polled_stream",
    "shared_stream",
    "sse_frame",
]
