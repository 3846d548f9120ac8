"""Fixtures for engine tests: a store on each backend, and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchpilot.connections import ConnectionRegistry
from batchpilot.settings import Settings
from batchpilot.store import RunStore


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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a home under tmp_path and the SQLite store."""
    return Settings(home=tmp_path / "home", workers=4, connections=ConnectionRegistry())
