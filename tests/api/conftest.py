"""Fixtures for the REST API: an app over a real SQLite store (in process), and a real
``batchpilot serve`` subprocess on a free port (over HTTP).

Every ``serve`` runs in its own process group and is killed, with every worker
it started, when the test ends, passed or not.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from batchpilot.api import create_app
from batchpilot.scheduler.catalog import PipelineCatalog
from batchpilot.scheduler.components import ServeContext
from batchpilot.settings import Settings
from batchpilot.store import RunStore
from batchpilot.store.tokens import TokenScope
from tests.api.live_pipelines import PIPELINES, write_pipelines
from tests.cli_processes import kill_run_owners
from tests.process_guard import guard_process
from tests.waiting import wait_until

SERVE = (sys.executable, "-m", "batchpilot", "serve")
API_LINE = re.compile(r"API on (http://[\d.]+:\d+)/api/v1")

HELLO = """\
name: hello
params:
  n: {type: integer, default: 1}
nodes:
  - id: a
    type: empty
  - id: b
    type: empty
    depends_on: [a]
"""


@dataclass
class Tokens:
    """A secret per scope, plus the store that made them."""

    store: RunStore
    secrets: dict[str, str] = field(default_factory=dict)

    def make(self, name: str, scope: TokenScope, **kwargs: Any) -> str:
        _, secret = self.store.tokens.create(name, scope, **kwargs)
        self.secrets[name] = secret
        return secret

    def header(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[name]}"}


def standard_tokens(store: RunStore) -> Tokens:
    tokens = Tokens(store)
    for scope in TokenScope:
        tokens.make(scope.value, scope)
    return tokens


# -- in process ------------------------------------------------------------------------------


@dataclass
class InProcessApi:
    app: FastAPI
    client: TestClient
    store: RunStore
    settings: Settings
    tokens: Tokens
    folder: Path
    context: ServeContext


def hello_serve_context(tmp_path: Path) -> tuple[ServeContext, PipelineCatalog]:
    """What ``serve`` gives the API: a SQLite store under ``tmp_path`` and a catalog of a
    folder holding ``hello``."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "hello.yaml").write_text(HELLO)
    settings = Settings(home=tmp_path / "home")
    store = RunStore(f"sqlite:///{tmp_path / 'state.db'}")
    catalog = PipelineCatalog(folder, settings=settings)
    catalog.refresh()
    return ServeContext(settings=settings, store=store), catalog


@pytest.fixture
def api(tmp_path: Path) -> Iterator[InProcessApi]:
    """The API over a SQLite store and a folder holding ``hello``, called in process."""
    context, catalog = hello_serve_context(tmp_path)
    settings, store, folder = context.settings, context.store, catalog.folder
    app = create_app(context, entries=catalog.entries, poll_s=0.05)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield InProcessApi(app, client, store, settings, standard_tokens(store), folder, context)
    context.stopping.set()
    store.dispose()


# -- a real serve ------------------------------------------------------------------------------


class LiveServe:
    """A ``batchpilot serve`` subprocess in its own process group, and an HTTP client on it."""

    def __init__(self, env: dict[str, str], folder: Path, log: Path, *extra: str) -> None:
        self.env = env
        self.log = log
        self.process = subprocess.Popen(
            [*SERVE, "--pipelines", str(folder), "--port", "0", *extra],
            env=env,
            cwd=folder.parent,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        guard_process(self.process.pid)  # killed by the fixture; and if pytest is killed
        self.url = wait_until(self._url, "serve listening", self.output)
        self.client = httpx.Client(base_url=self.url + "/api/v1", timeout=60)

    def _url(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited {self.process.returncode}:\n{self.output()}")
        found = API_LINE.findall(self.output())
        return found[-1] if found else None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 of serve's process group, and of its workers (in groups of their own:
        a follower of a run on Airflow has no run owner to find them by)."""
        try:
            workers = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            workers = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.kill()
        self.process.wait(timeout=30)
        self.client.close()

    def terminate(self) -> int:
        """SIGTERM; serve's exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.client.close()
        return code


@dataclass
class ServeFactory:
    env: dict[str, str]
    home: Path
    root: Path
    started: list[LiveServe] = field(default_factory=list)

    def __call__(self, folder: Path, *extra: str) -> LiveServe:
        serve = LiveServe(self.env, folder, self.root / f"serve-{len(self.started)}.log", *extra)
        self.started.append(serve)
        return serve

    def store(self) -> RunStore:
        return RunStore.for_home(self.home)


def _serve_factory(root: Path, extra_env: dict[str, str]) -> Iterator[ServeFactory]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
    home = root / "home"
    env["BATCHPILOT_HOME"] = str(home)
    env.update(extra_env)
    factory = ServeFactory(env, home, root)
    try:
        yield factory
    finally:
        for serve in factory.started:
            if serve.process.poll() is None:
                serve.kill()
        store = factory.store()
        kill_run_owners(store)
        store.dispose()


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Starts ``serve`` processes for one test; kills them and their workers at its end."""
    yield from _serve_factory(tmp_path, {})


@pytest.fixture(scope="module")
def shared_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServe, Tokens]]:
    """One ``serve`` for a module's read-mostly tests, with a token per scope."""
    root = tmp_path_factory.mktemp("serve")
    folder = write_pipelines(root / "pipelines", *(n for n in PIPELINES if n != "sleepy_sql"))
    for factory in _serve_factory(root, {}):
        store = factory.store()
        tokens = standard_tokens(store)
        yield factory(folder), tokens
        store.dispose()
