"""The Airflow side of ``backfill.py --airflow``: ``airflow backfill create`` on a real
``airflow standalone`` (Airflow 3.3.2, LocalExecutor, parallelism 4, metadata in
PostgreSQL or SQLite).

:func:`time_airflow_backfill` exports the benchmark pipeline with ``batchpilot export
airflow``, migrates a fresh metadata database, starts ``airflow standalone`` in its
own process group (killed in a ``finally``), waits until it answers, its scheduler is
healthy and the DAG is parsed, unpauses the DAG, then times ``airflow backfill create``
from the command's start until every backfill DAG run of the range has ended (polled
on the REST API every 2 s). Nothing here is timed but that.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from _common import REPO, BenchmarkBroken, progress

AIRFLOW_VERSION = "3.3.2"
USERNAME, PASSWORD = "admin", "admin-bench"
#: seconds ``airflow standalone`` gets to answer with a healthy scheduler (16-34 s measured)
START_TIMEOUT_S = 300.0
#: seconds the DAG processor gets to parse the exported DAG
PARSE_TIMEOUT_S = 180.0
POLL_S = 2.0
#: seconds an Airflow process waits for SQLite's lock before "database is locked"
SQLITE_BUSY_TIMEOUT_S = 120
CONNECT_ARGS_MODULE = "bench_airflow_connect_args"


@dataclass(frozen=True)
class AirflowBackfill:
    """What one ``airflow backfill create`` did: wall seconds until every run ended."""

    wall_s: float
    runs: int
    succeeded: int


def airflow_python(venv: Path) -> Path:
    """The Python of ``venv``, checked to import Airflow 3.3.2 and batchpilot (the exported
    DAG's operator); raises :class:`BenchmarkBroken` saying how to make one."""
    python = venv / "bin" / "python"
    probe = "import airflow, batchpilot.airflow.operator; print(airflow.__version__)"
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if found.returncode != 0 or found.stdout.strip() != AIRFLOW_VERSION:
        raise BenchmarkBroken(
            f"{venv} does not import apache-airflow {AIRFLOW_VERSION} and batchpilot; create "
            f"it: python3.11 -m venv {venv} && {venv}/bin/pip install "
            f"apache-airflow=={AIRFLOW_VERSION} -e {REPO} (or pass --airflow-venv)"
        )
    return python


def time_airflow_backfill(
    venv: Path,
    home: Path,
    pipeline_file: Path,
    start: date,
    end: date,
    concurrency: int,
    *,
    metadata_url: str | None = None,
) -> AirflowBackfill:
    """Export, start Airflow, and time ``airflow backfill create`` over ``start..end``.

    ``metadata_url``: Airflow's metadata database as a SQLAlchemy URL (PostgreSQL:
    ``postgresql+psycopg://…``, an empty database); None: SQLite in ``home``.
    """
    airflow_python(venv)
    dags = home / "dags"
    dags.mkdir(parents=True)
    dag_id = _export(pipeline_file, dags)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _environment(venv, home, pipeline_file.parent, port)
    if metadata_url is not None:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = metadata_url
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = metadata_url  # psycopg 3: both
        del env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"]
        del env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"]
    airflow = str(venv / "bin" / "airflow")
    progress("airflow: db migrate")
    migrated = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True)
    if migrated.returncode != 0:
        raise BenchmarkBroken(f"airflow db migrate failed: {migrated.stderr[-2000:]}")
    log_path = home / "standalone.log"
    progress(f"airflow: standalone on {url} (16-34 s to come up)")
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [airflow, "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole in the finally
        )
    try:
        api = _Api(url)
        _wait(lambda: server.poll() is None and api.healthy(), START_TIMEOUT_S,
              "airflow standalone did not come up", log_path)  # fmt: skip
        _wait(lambda: api.dag_exists(dag_id), PARSE_TIMEOUT_S, "the DAG was not parsed", log_path)
        api.unpause(dag_id)
        progress(f"airflow: backfill create {dag_id} {start}..{end}, max-active-runs "
                 f"{concurrency}")  # fmt: skip
        command = [
            airflow, "backfill", "create", "--dag-id", dag_id, "--from-date", start.isoformat(),
            "--to-date", end.isoformat(), "--max-active-runs", str(concurrency),
        ]  # fmt: skip
        began = time.perf_counter()
        created = subprocess.run(command, env=env, capture_output=True, text=True)
        if created.returncode != 0:
            raise BenchmarkBroken(f"airflow backfill create failed: {created.stderr[-2000:]}")
        expected = (end - start).days + 1
        shown = -1.0
        while True:
            counts = api.backfill_counts(dag_id)
            if counts is not None:
                ended = counts["success"] + counts["failed"]
                if counts["total"] >= expected and ended == counts["total"]:
                    break
                if time.perf_counter() - shown >= 30:
                    shown = time.perf_counter()
                    progress(f"airflow: {ended} of {expected} backfill runs ended")
            if server.poll() is not None:
                raise BenchmarkBroken(f"airflow standalone exited; see {log_path}")
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - began
        return AirflowBackfill(elapsed, counts["total"], counts["success"])
    finally:
        _stop(server)


def _export(pipeline_file: Path, dags: Path) -> str:
    """``batchpilot export airflow`` into ``dags``; returns the DAG id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(pipeline_file.parent)])
    done = subprocess.run(
        [sys.executable, "-m", "batchpilot", "export", "airflow", str(pipeline_file),
         "--out", str(dags)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0 or "(DAG " not in done.stdout:
        raise BenchmarkBroken(f"export failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")
    return done.stdout.rsplit("(DAG ", 1)[1].split(")", 1)[0]


def _environment(venv: Path, home: Path, steps: Path, port: int) -> dict[str, str]:
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USERNAME: PASSWORD}))
    (home / f"{CONNECT_ARGS_MODULE}.py").write_text(
        f"CONNECT_ARGS = {{'timeout': {SQLITE_BUSY_TIMEOUT_S}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BATCHPILOT_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # SQLite metadata crashes the scheduler ("database is locked") at the default 32
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            # the default timeout of a task's calls to the execution API (5 s) failed the first
            # tasks on a loaded machine ("ReadTimeout"), ending their runs failed
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            # standalone starts its parts as a bare ``airflow`` command
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            # the pipeline's python steps, for the workers; the connect args module
            "PYTHONPATH": os.pathsep.join([str(steps), str(home)]),
            # SQLite's 5 s busy timeout is not enough on a loaded machine: the CLI's insert of
            # the backfill's runs failed with "database is locked" while the scheduler wrote
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{CONNECT_ARGS_MODULE}.CONNECT_ARGS",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": (
                f"{CONNECT_ARGS_MODULE}.CONNECT_ARGS"
            ),
            "BATCHPILOT_AIRFLOW_ARTIFACTS": str(home / "artifacts"),
            "BATCHPILOT_HOME": str(home / "batchpilot-home"),
        }
    )
    return env


class _Api:
    """The few REST calls needed, with a bearer token fetched on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._token: str | None = None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._token is None:
            self._token = self._login()
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def _login(self) -> str:
        body = json.dumps({"username": USERNAME, "password": PASSWORD}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.loads(response.read())["access_token"])

    def healthy(self) -> bool:
        try:
            health = self._call("GET", "/api/v2/monitor/health")
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            self._token = None
            return False
        return (health.get("scheduler") or {}).get("status") == "healthy"

    def dag_exists(self, dag_id: str) -> bool:
        try:
            self._call("GET", f"/api/v2/dags/{dag_id}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        except (TimeoutError, urllib.error.URLError, OSError):
            return False  # a loaded machine: ask again
        return True

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def backfill_counts(self, dag_id: str) -> dict[str, int] | None:
        """The DAG's backfill runs: ``total``, ``success`` and ``failed``; None when the API
        did not answer in time (a loaded machine: ask again)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns?run_type=backfill&limit=1"
        try:
            return {
                "total": self._call("GET", path)["total_entries"],
                "success": self._call("GET", f"{path}&state=success")["total_entries"],
                "failed": self._call("GET", f"{path}&state=failed")["total_entries"],
            }
        except (TimeoutError, urllib.error.URLError, OSError):
            return None


def _wait(ready: Any, timeout_s: float, message: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise BenchmarkBroken(f"{message} within {timeout_s:.0f} s; see {log}")
        time.sleep(1)


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to standalone's process group, 5 s, then SIGKILL (SIGINT would leave its
    scheduler and workers running)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # parts that outlived the leader
    server.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
