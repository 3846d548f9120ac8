"""An open-loop HTTP load: clients that send on a clock, not when the last answer came.

``clients`` clients, each on one keep-alive connection of its own (opened before the
clock starts), send ``GET path`` every ``interval_s`` seconds for ``duration_s``; their
first sends are spread evenly over the first interval. Each request is timed from the
moment the schedule says it should be sent, not from when it was sent: a slow answer
never delays (and so never hides) the requests behind it, which a closed loop would
(coordinated omission). A request due while the previous one of the same client is
still out waits for that client's connection, as it would in a real program with one
connection, and that wait counts in its latency.

The clients are asyncio tasks on httpx.AsyncClient in the calling process (one thread):
at the rates this is used at (tens of requests a second, ~1-2 ms of client CPU each) the
client uses a few percent of a core, so it is not what is measured; each result says how
late the client itself sent (``send_lag_ms``) and its CPU per request, so that a
reader can check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx


@dataclass
class OpenLoopResult:
    """What one open-loop run measured (times in ms)."""

    clients: int
    interval_s: float
    duration_s: float
    #: from each request's intended send time to its complete answer
    latencies_ms: list[float] = field(default_factory=list)
    #: how late the client sent each request (its own lateness; should stay near 0)
    send_lag_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def offered_per_s(self) -> float:
        """Requests per second the schedule asks for."""
        return self.clients / self.interval_s

    @property
    def achieved_per_s(self) -> float:
        """Answers per second over the schedule's span (or to the last answer, when later)."""
        span = max(self.duration_s, self.elapsed_s)
        return len(self.latencies_ms) / span if span else 0.0

    @property
    def client_cpu_ms_per_request(self) -> float:
        """This process's CPU (the clients') per request."""
        sent = len(self.latencies_ms) + len(self.errors)
        return self.client_cpu_s * 1000 / sent if sent else 0.0


def run_open_loop(
    base_url: str,
    path: str,
    *,
    params: Mapping[str, object],
    headers: Mapping[str, str],
    clients: int,
    interval_s: float,
    duration_s: float,
    check: Callable[[httpx.Response], str | None],
) -> OpenLoopResult:
    """Run the schedule; ``check`` returns a reason when an answer is wrong (counted as
    an error, not as a latency)."""
    result = OpenLoopResult(clients, interval_s, duration_s)
    asyncio.run(_run(base_url, path, dict(params), dict(headers), result, check))
    return result


async def _run(
    base_url: str,
    path: str,
    params: dict[str, object],
    headers: dict[str, str],
    result: OpenLoopResult,
    check: Callable[[httpx.Response], str | None],
) -> None:
    async with AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    headers=headers,
                    timeout=120,
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                )
            )
            for _ in range(result.clients)
        ]
        # every client opens its connection first (all at once), so the clock measures
        # requests on open connections, as a program polling the API sends them
        await asyncio.gather(*(client.get(path, params=params) for client in pool))
        sends_each = max(1, round(result.duration_s / result.interval_s))
        result.duration_s = sends_each * result.interval_s
        cpu = time.process_time()
        start = time.monotonic() + 0.2
        requests: list[asyncio.Task[None]] = []

        async def one(client: httpx.AsyncClient, due: float) -> None:
            result.send_lag_ms.append((time.monotonic() - due) * 1000)
            try:
                response = await client.get(path, params=params)
                wrong = check(response)
            except httpx.HTTPError as exc:
                wrong = f"{type(exc).__name__}: {exc}"
            if wrong is None:
                result.latencies_ms.append((time.monotonic() - due) * 1000)
            else:
                result.errors.append(wrong)

        async def schedule(index: int, client: httpx.AsyncClient) -> None:
            first = start + index * result.interval_s / result.clients
            for i in range(sends_each):
                due = first + i * result.interval_s
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                requests.append(asyncio.create_task(one(client, due)))

        await asyncio.gather(*(schedule(i, c) for i, c in enumerate(pool)))
        await asyncio.gather(*requests)
        result.elapsed_s = time.monotonic() - start
        result.client_cpu_s = time.process_time() - cpu


__all__ = ["OpenLoopResult", "run_open_loop"]
