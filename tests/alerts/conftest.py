"""Fixtures for the alert tests: a SQLite store, a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchpilot.clock import FakeClock
from batchpilot.store import RunStore

START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    """A clock at ``START`` that moves only when a test moves it."""
    return FakeClock(START)


@pytest.fixture
def store(sqlite_store: RunStore) -> RunStore:
    """A SQLite state store."""
    return sqlite_store
