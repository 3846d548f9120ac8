"""Fixtures for the alert tests: a SQLite store, a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batchpilot.store import RunStore

START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    store = RunStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.dispose()
