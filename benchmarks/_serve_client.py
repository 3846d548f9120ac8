"""``batchpilot serve`` as the benchmark scripts drive it (not a benchmark itself):
started in its own process group on a scratch home, stopped, and sent runs over its API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.tokens import TokenScope

SERVE = (sys.executable, "-m", "batchpilot", "serve")
#: the pipeline :func:`time_executes_to_running` runs: one task that does nothing
HELLO_YAML = "name: hello\nnodes:\n  - {id: a, type: empty}\n"
#: seconds serve is given to start listening
START_TIMEOUT_S = 120


def start_serve(
    pipelines: Path, home: Path, log: Path, *args: str, database_url: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``batchpilot serve --pipelines PIPELINES --port 0 ARGS`` in its own process group,
    with ``home`` as ``BATCHPILOT_HOME`` (and ``database_url`` as its store, if given) and
    no other ``BATCHPILOT_*`` variable of this process, its output in ``log``. Returns it
    and its API's URL as soon as it listens; exits the script (serve killed, its log
    shown) if serve ends or does not listen within ``START_TIMEOUT_S``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
    env["BATCHPILOT_HOME"] = str(home)
    if database_url is not None:
        env["BATCHPILOT_DATABASE_URL"] = database_url
    serve = subprocess.Popen(
        [*SERVE, "--pipelines", str(pipelines), "--port", "0", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.findall(r"API on (http://\S+/api/v1)", log.read_text())
        if found:
            return serve, found[-1]
        if serve.poll() is not None:
            break
        time.sleep(0.01)
    os.killpg(serve.pid, signal.SIGKILL)
    raise SystemExit(f"serve did not start:\n{log.read_text()}")


def stop_serve(serve: subprocess.Popen[bytes]) -> None:
    """SIGTERM to serve's process group, SIGKILL if it has not ended within 60 s."""
    try:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()


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


def time_executes_on_fresh_serve(pipelines: Path, home: Path, log: Path, count: int) -> list[float]:
    """Start serve on ``pipelines`` (which holds ``hello``) with its state in ``home``,
    give this client a ``run`` token, time ``count`` executes as
    :func:`time_executes_to_running` does (the first sent the moment the API listens),
    and stop serve."""
    store = RunStore.for_home(home)
    _, secret = store.tokens.create("bench-run", TokenScope.RUN)
    serve, url = start_serve(pipelines, home, log)
    try:
        return time_executes_to_running(url, secret, store, count)
    finally:
        stop_serve(serve)
        store.dispose()
