"""A client of a running ``batchpilot serve``, shared by the benchmark scripts (not a
benchmark itself)."""

from __future__ import annotations

import time

import httpx

from batchpilot.states import RunStatus
from batchpilot.store import RunStore


def time_executes_to_running(url: str, secret: str, store: RunStore, count: int) -> list[float]:
    """``POST /pipelines/hello/execute`` ``count`` times, one run after the other: for
    each, the ms until the store shows the run taken by a worker (no longer ``queued``);
    each run is left to end before the next is asked for."""
    times = []
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for _ in range(count):
            began = time.perf_counter()
            run_id = client.post("/pipelines/hello/execute", json={}).json()["run_id"]
            while store.get_run(run_id).status is RunStatus.QUEUED:
                time.sleep(0.005)
            times.append((time.perf_counter() - began) * 1000)
            while not store.get_run(run_id).status.is_terminal():
                time.sleep(0.05)
    return times
