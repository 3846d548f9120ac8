"""``/api/v1/events`` costs one look at the store per interval, however many clients
listen: twenty streams over real HTTP are fed by one feed, and each of them hears the
same change. The shared poll itself (:mod:`batchpilot.shared_poll`) stops when its last
listener leaves and takes a fresh baseline for the next one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batchpilot.api import ApiServer, create_app
from batchpilot.api.events import RunChanges
from batchpilot.shared_poll import SharedPoll
from batchpilot.store import RunStore
from tests.api.conftest import hello_serve_context, standard_tokens
from tests.waiting import WAIT_S

STREAMS = 20


class CountedRunChanges(RunChanges):
    """The run events, counting the sources made and the looks they took (a plug-in
    source, as the monitor's alerts are)."""

    made = 0
    looks = 0

    def __init__(self, store: RunStore) -> None:
        super().__init__(store)
        type(self).made += 1

    def changes(self) -> list[str]:
        type(self).looks += 1
        return []


@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[tuple[str, ApiServer, RunStore, dict[str, str]]]:
    context, catalog = hello_serve_context(tmp_path)
    store = context.store
    CountedRunChanges.made = CountedRunChanges.looks = 0
    app = create_app(
        context, entries=catalog.entries, poll_s=0.05, event_sources=[CountedRunChanges]
    )
    server = ApiServer(app, port=0)
    server.start()
    tokens = standard_tokens(store)
    secrets = dict(tokens.secrets)
    try:
        yield f"http://127.0.0.1:{server.port}/api/v1", server, store, secrets
    finally:
        context.stopping.set()
        server.stop()
        store.dispose()


def _next_run_event(lines: Iterator[str]) -> dict[str, object]:
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "run":
            return json.loads(line.removeprefix("data: "))  # type: ignore[no-any-return]
    raise AssertionError("the stream ended without a run event")


def test_twenty_event_streams_share_one_look_at_the_store_per_interval(
    live_api: tuple[str, ApiServer, RunStore, dict[str, str]],
) -> None:
    base, server, _, secrets = live_api
    shared: SharedPoll[list[str]] = server.server.config.app.state.events
    read = {"Authorization": f"Bearer {secrets['read']}"}
    with contextlib.ExitStack() as streams:
        lines = []
        for _ in range(STREAMS):
            client = streams.enter_context(httpx.Client(base_url=base, timeout=WAIT_S))
            stream = streams.enter_context(client.stream("GET", "/events", headers=read))
            assert stream.status_code == 200
            lines.append(stream.iter_lines())
            next(lines[-1])  # the stream shows open: the shared feed has its baseline
        assert shared.listeners == STREAMS
        looks_before = CountedRunChanges.looks

        executed = httpx.post(
            f"{base}/pipelines/hello/execute",
            json={},
            headers={"Authorization": f"Bearer {secrets['run']}"},
            timeout=WAIT_S,
        )
        assert executed.status_code == 202
        run_id = executed.json()["run_id"]

        heard = [_next_run_event(stream_lines) for stream_lines in lines]
        assert {event["run_id"] for event in heard} == {run_id}
        assert {event["status"] for event in heard} == {"queued"}
        # one source for every stream, asked once per poll of the shared feed
        assert CountedRunChanges.made == 1
        assert CountedRunChanges.looks == shared.polls
        looks_while_streaming = CountedRunChanges.looks - looks_before
        assert looks_while_streaming < STREAMS  # per interval, not per stream
    assert looks_while_streaming >= 1


def test_a_shared_poll_stops_with_its_last_listener_and_starts_afresh() -> None:
    calls: list[str] = []
    state = {"value": "a"}

    def poll() -> str:
        calls.append(state["value"])
        return state["value"]

    async def scenario() -> None:
        shared = SharedPoll(poll, interval_s=0.01, replay_latest=True)
        async with shared.listen() as first, shared.listen() as second:
            assert await first.get() == "a"  # the latest value, at once
            assert await second.get() == "a"
            state["value"] = "b"
            while await first.get() != "b":
                pass
            assert shared.listeners == 2
        assert shared.listeners == 0
        stopped_at = len(calls)
        await asyncio.sleep(0.05)
        assert len(calls) == stopped_at  # nobody listens: nothing polls
        async with shared.listen() as third:
            assert await third.get() == "b"  # a fresh first look for the new listener
        assert calls[stopped_at] == "b"

    asyncio.run(scenario())


def test_a_stream_of_changes_does_not_replay_what_came_before_it() -> None:
    batches = iter([["baseline"], ["first"], ["second"], *([[]] * 1000)])
    ready = threading.Event()

    def poll() -> list[str]:
        ready.set()
        return next(batches)

    async def scenario() -> None:
        shared = SharedPoll(poll, interval_s=0.01)
        async with shared.listen() as queue:
            assert await queue.get() == ["first"]
            assert await queue.get() == ["second"]

    asyncio.run(scenario())
    assert ready.is_set()
