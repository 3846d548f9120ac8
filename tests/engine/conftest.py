"""Fixtures for engine tests: each end-to-end test runs on both state stores.

``settings`` points at a SQLite state store under the test's home, then at a
PostgreSQL state store (a fresh database of its own, apart from the
``pg_url`` database tests use as a target); ``run_store`` opens whichever it
is. ``store`` is the store contract suite's own fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchpilot.connections import ConnectionRegistry
from batchpilot.settings import Settings
from batchpilot.store import RunStore
from tests.conftest import fresh_database, url_of


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state store's URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str) -> Iterator[RunStore]:
    store = RunStore(store_url)
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite-state", "pg-state"])
def state_database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the embedded SQLite store under the home; else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    server_dsn: str = request.getfixturevalue("pg_server_dsn")
    with fresh_database(server_dsn, "bp_state") as dsn:
        yield url_of(dsn)


@pytest.fixture
def settings(tmp_path: Path, state_database_url: str | None) -> Settings:
    """Settings with a home under tmp_path, on the SQLite state store, then PostgreSQL."""
    return Settings(
        home=tmp_path / "home",
        database_url=state_database_url,
        workers=4,
        connections=ConnectionRegistry(),
    )


@pytest.fixture
def run_store(settings: Settings) -> Iterator[RunStore]:
    """The state store ``settings`` point at."""
    store = RunStore.for_home(settings.home, settings.database_url)
    yield store
    store.dispose()
