"""Fixtures of the dashboard tests: a real dashboard server over HTTP on 127.0.0.1 (a
subprocess in its own process group), tokens, and runs made by the real engine."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path

import httpx
import pytest

from batchpilot.engine import RunService
from batchpilot.pipeline import load_pipeline
from batchpilot.settings import Settings
from batchpilot.store import RunStore
from batchpilot.store.tokens import TokenScope
from tests.conftest import REPO_ROOT
from tests.process_guard import guard_process

PIPELINES = Path(__file__).resolve().parent / "pipelines"
START_TIMEOUT_S = 60
#: seconds a test's runs take to make at most: they start this far from midnight UTC
RUNS_SPAN_S = 120.0


def day_clear_of_midnight(span_s: float = RUNS_SPAN_S) -> date:
    """Today (UTC, the dashboard server's zone), once at least ``span_s`` seconds remain
    before midnight: runs made within ``span_s`` from now all fall on the day returned.

    Closer to midnight than that, it waits until just after it. Tests read the overview
    of this day (``/?day=...``), never the server's "today", which changes at 00:00.
    """
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), time_of_day(), UTC)
    left_s = (midnight - now).total_seconds()
    if left_s < span_s:
        time.sleep(left_s + 0.5)
    return datetime.now(UTC).date()


@dataclass
class Dashboard:
    """A running dashboard server: its URL, home and pipelines folder."""

    url: str
    home: Path
    pipelines: Path
    process: subprocess.Popen[bytes]

    def client(self) -> httpx.Client:
        """An HTTP client of this server that keeps cookies and does not follow redirects."""
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)

    def worker_pids(self) -> list[int]:
        pid_file = self.home / "test-worker-pids"
        if not pid_file.exists():
            return []
        return [int(line) for line in pid_file.read_text().split()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def dashboard_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The batchpilot home the module's dashboard server reads (one server per module and
    xdist worker: starting one costs seconds; tests tell their runs and tokens apart)."""
    home = tmp_path_factory.mktemp("dashboard") / "home"
    home.mkdir()
    return home


@pytest.fixture(scope="module")
def pipelines_dir(dashboard_home: Path) -> Path:
    """A copy of the test pipelines: the folder the server's catalog reads."""
    folder = dashboard_home.parent / "pipelines"
    shutil.copytree(PIPELINES, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture(scope="module")
def settings(dashboard_home: Path) -> Settings:
    """The settings of the server's home (SQLite state store)."""
    return Settings(home=dashboard_home)


@pytest.fixture(scope="module")
def run_store(settings: Settings) -> Iterator[RunStore]:
    """The home's state store, as the dashboard server reads it."""
    store = RunStore.for_home(settings.home)
    yield store
    store.dispose()


@pytest.fixture
def make_token(run_store: RunStore) -> Callable[[str, TokenScope], str]:
    """Creates a token of a scope; returns its secret."""

    def make(name: str, scope: TokenScope) -> str:
        return run_store.tokens.create(name, scope)[1]

    return make


@pytest.fixture
def run_pipeline(
    settings: Settings, run_store: RunStore, pipelines_dir: Path
) -> Callable[..., str]:
    """Runs a test pipeline to its end with the real engine, in this process; returns its
    run id."""
    service = RunService(settings=settings, store=run_store)

    def run(name: str, **params: object) -> str:
        spec = load_pipeline(pipelines_dir / f"{name}.yaml")
        return service.start(spec, params=params).run_id

    return run


@pytest.fixture(scope="module")
def dashboard(
    dashboard_home: Path, pipelines_dir: Path, run_store: RunStore
) -> Iterator[Dashboard]:
    """The dashboard server of the module, stopped (process groups killed) after it."""
    home = dashboard_home
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
    env["BATCHPILOT_HOME"] = str(home)
    log = (home / "dashboard-server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.ui.dashboard_app", str(port), str(pipelines_dir)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    guard_process(process.pid)  # stopped below; and if pytest is killed
    server = Dashboard(f"http://127.0.0.1:{port}", home, pipelines_dir, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"the dashboard server exited with {process.returncode}: "
                    f"{(home / 'dashboard-server.log').read_text()[-2000:]}",
                    pytrace=False,
                )
            try:
                httpx.get(f"{server.url}/login", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the dashboard server did not answer within {START_TIMEOUT_S}s")
                time.sleep(0.1)
        yield server
    finally:
        for pid in server.worker_pids():
            _kill_group(pid)
        _kill_group(process.pid)
        process.wait()
        log.close()


def log_in(client: httpx.Client, secret: str) -> httpx.Response:
    """Log ``client`` in with the token ``secret`` through the login form."""
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None, form.text
    return client.post("/login", data={"token": secret, "csrf": csrf.group(1), "next": "/"})


def csrf_of(page: str) -> str:
    """The CSRF token in a page's forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "no form with a CSRF token on the page"
    return found.group(1)


CHROMIUM = Path("/usr/bin/chromium")
HOW_TO_GET_CHROMIUM = (
    "the browser tests need Debian's chromium at /usr/bin/chromium and Playwright "
    "(pip install 'playwright==1.65.2', in the test extra). Install the browser as root: "
    "apt-get update && apt-get install -y chromium fonts-noto-color-emoji"
)


@pytest.fixture(scope="session")
def chromium_executable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's chromium, installed with apt-get (as root) on first use when missing.

    Playwright drives it through ``executable_path``: Playwright's own browser download is
    not reachable from here."""
    if CHROMIUM.exists():
        return CHROMIUM
    log = tmp_path_factory.mktemp("chromium-install") / "apt.log"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"chromium is missing and this user cannot install it: {HOW_TO_GET_CHROMIUM}")
    with log.open("w") as out:
        # the emoji font draws the status icons (the words are there without it)
        install = ["apt-get", "install", "-y", "chromium", "fonts-noto-color-emoji"]
        for command in (["apt-get", "update"], install):
            done = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            if done.returncode != 0:
                pytest.fail(
                    f"installing chromium failed ({' '.join(command)}, see {log}): "
                    f"{HOW_TO_GET_CHROMIUM}",
                    pytrace=False,
                )
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed no {CHROMIUM} (see {log}): {HOW_TO_GET_CHROMIUM}")
    return CHROMIUM
