"""Fixtures for the notification tests: a fake clock, a store, real servers on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batchpilot.store import RunStore
from tests.notify.servers import SmtpServer, WebhookServer, make_certificate, server_tls_context

START = datetime(2026, 3, 1, 2, 59, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = instant


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    """A SQLite state store (the store contract suite runs the outbox on PostgreSQL too)."""
    store = RunStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.dispose()


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key)."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """aiosmtpd with STARTTLS required and AUTH (user ``etl``)."""
    server = SmtpServer(tls=server_tls_context(*certificate)).start()
    yield server
    server.stop()
