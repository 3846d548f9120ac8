"""A real Apache Airflow for the test suite, in its own virtual environment.

- ``airflow_python``: ``<repo>/.venv-airflow`` (gitignored) with
  apache-airflow==3.3.2 and batchpilot installed editable, created on first
  use with uv (~15 s, see ``tests/side_venvs.py``) and reused while its probe
  passes. It is never mixed into the project's venv. batchpilot's pins and
  Airflow's resolve together (pip check is clean), so both are installed in
  one resolver run.
- ``dag_test_home``: an AIRFLOW_HOME with a migrated SQLite metadata database,
  for ``dag.test()`` runs in one driver process (``tests/airflow/driver.py``).
- ``airflow_server``: ``airflow standalone`` (API server, scheduler with
  LocalExecutor, DAG processor, triggerer) on 127.0.0.1, once per session
  (package-scoped: stopped by process group after the last Airflow test).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import side_venvs
from tests.airflow.driver import AirflowDriver
from tests.conftest import REPO_ROOT
from tests.process_guard import guard_process

AIRFLOW_VERSION = "3.3.2"
AIRFLOW_VENV = REPO_ROOT / ".venv-airflow"
HERE = Path(__file__).resolve().parent
PIPELINES = HERE / "pipelines"
USERNAME, PASSWORD = "admin", "admin-test-secret"
START_TIMEOUT_S = 180

_PROBE = (
    "import airflow, batchpilot, batchpilot.airflow.operator, pathlib;"
    "print(airflow.__version__, pathlib.Path(batchpilot.__file__).resolve())"
)


def _install_stamp() -> str:
    """Changes when batchpilot's runtime dependencies change, so the venv is refreshed."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return hashlib.sha256(json.dumps(project["dependencies"]).encode()).hexdigest()[:16]


def _healthy(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True)
    expected_src = str((REPO_ROOT / "src" / "batchpilot" / "__init__.py").resolve())
    stamp = AIRFLOW_VENV / ".batchpilot-stamp"
    return (
        probe.returncode == 0
        and probe.stdout.split() == [AIRFLOW_VERSION, expected_src]
        and stamp.exists()
        and stamp.read_text() == _install_stamp()
    )


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    """The Python of the Airflow venv (created or refreshed when needed)."""
    try:
        return side_venvs.build(
            AIRFLOW_VENV,
            [f"apache-airflow=={AIRFLOW_VERSION}", "-e", str(REPO_ROOT)],
            healthy=_healthy,
            stamp=_install_stamp(),
        )
    except side_venvs.SideVenvError as exc:
        pytest.fail(
            f"{exc}. Fix: make sure the package registry is reachable, then delete "
            f"{AIRFLOW_VENV} and run pytest again, or create it by hand: "
            "python3.11 -m venv .venv-airflow && "
            f".venv-airflow/bin/pip install apache-airflow=={AIRFLOW_VERSION} -e .",
            pytrace=False,
        )


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment of an Airflow process: its home, quiet defaults, the test steps importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BATCHPILOT_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PATH": f"{AIRFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(PIPELINES),
            "BATCHPILOT_AIRFLOW_ARTIFACTS": str(home / "artifacts"),
            "BATCHPILOT_HOME": str(home / "batchpilot-home"),
        }
    )
    env.update(extra)
    return env


@dataclass
class DagTestHome:
    """An AIRFLOW_HOME for ``dag.test()``: write DAGs into ``dags``, run them with ``test``.

    One driver process (``tests/airflow/driver.py``) serves every request; each builds
    its DagBag from the files on disk at the time of the request."""

    home: Path
    driver: AirflowDriver

    @property
    def dags(self) -> Path:
        return self.home / "dags"

    def dagbag(self, folder: Path) -> dict[str, Any]:
        """Import every DAG file of ``folder`` with Airflow's DagBag: its DAGs and errors."""
        return dict(self.driver.request("dagbag", str(folder)))

    def test(self, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        """``dag.test()`` one DAG with a run conf; returns states of the run and its tasks."""
        return dict(self.driver.request("test", dag_id, conf))


@pytest.fixture(scope="package")
def dag_test_home(
    airflow_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagTestHome]:
    """An AIRFLOW_HOME with its metadata database migrated (``airflow db migrate``, run by
    the driver), and the driver process; package scope, so the driver stops after the
    last Airflow test of the worker instead of idling until the end of the session."""
    home = tmp_path_factory.mktemp("airflow-dag-test")
    (home / "dags").mkdir()
    driver = AirflowDriver(airflow_python, lambda: airflow_env(home), home / "driver.log")
    try:
        driver.request("migrate")
        yield DagTestHome(home=home, driver=driver)
    finally:
        driver.stop()


@dataclass
class AirflowServer:
    """A running ``airflow standalone``: where it listens and how to log in."""

    url: str
    home: Path
    username: str = USERNAME
    password: str = PASSWORD

    @property
    def dags(self) -> Path:
        return self.home / "dags"

    def client_env(self, batchpilot_home: Path) -> dict[str, str]:
        """Environment of a ``batchpilot`` command that drives this Airflow."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
        env.update(
            {
                "BATCHPILOT_HOME": str(batchpilot_home),
                "BATCHPILOT_AIRFLOW_URL": self.url,
                "BATCHPILOT_AIRFLOW_USERNAME": self.username,
                "BATCHPILOT_AIRFLOW_PASSWORD": self.password,
                "BATCHPILOT_AIRFLOW_DAGS_FOLDER": str(self.dags),
                "BATCHPILOT_AIRFLOW_PARSE_TIMEOUT": "90",
            }
        )
        return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    body = json.dumps({"username": USERNAME, "password": PASSWORD}).encode()
    request = urllib.request.Request(
        f"{url}/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status in (200, 201)
    except (urllib.error.URLError, OSError):
        return False


def _scheduler_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3) as response:
            health = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return (health.get("scheduler") or {}).get("status") == "healthy"


@pytest.fixture(scope="package")
def airflow_server(
    airflow_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowServer]:
    """``airflow standalone`` on 127.0.0.1 with SQLite metadata and the LocalExecutor.

    A fresh home (so a fresh metadata database) every session; stopped by
    SIGTERM to its process group, then SIGKILL (standalone ignores SIGINT).
    Package scope: the tests using it run one after another (one xdist group,
    ``tests/conftest.py``), and it stops after the last of them instead of at
    the end of the session: idle, its scheduler, DAG processor and API server
    still took CPU from every test the worker ran after them.
    """
    home = tmp_path_factory.mktemp("airflow-server")
    (home / "dags").mkdir()
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USERNAME: PASSWORD}))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = airflow_env(
        home,
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USERNAME}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(_free_port()),
        # New DAG files are found every 2 s, and a file written since its last parse is
        # parsed again at once (file_parsing_sort_mode=modified_time, the default; deploys
        # also ask for a re-parse). Unchanged files are never parsed again: re-parsed
        # every 2 s, 4 files kept the idle server at 39 s CPU a minute (6 s with this).
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="2",
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3600",
        AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE="modified_time",
    )
    log = (home / "standalone.log").open("w")
    process = subprocess.Popen(
        [str(AIRFLOW_VENV / "bin" / "airflow"), "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    guard_process(process.pid)  # stopped below; and if pytest is killed
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (_answers(url) and _scheduler_healthy(url)):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (home / "standalone.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"airflow standalone did not come up at {url}:\n{tail}", pytrace=False)
            time.sleep(1)
        yield AirflowServer(url=url, home=home)
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers that outlived the leader
    process.wait(timeout=10)


def params_for(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Run params pointing the test pipelines at this test's SQLite target."""
    return {"db": str(tmp_path / "target.db"), **extra}
