"""Fixtures for the notification tests: a fake clock, a store, real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpilot.clock import FakeClock
from batchpilot.store import RunStore
from tests.notify.servers import SmtpServer, WebhookServer, make_certificate, server_tls_context

START = datetime(2026, 3, 1, 2, 59, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    """A clock at ``START`` that moves only when a test moves it."""
    return FakeClock(START)


@pytest.fixture
def store(sqlite_store: RunStore) -> RunStore:
    """A SQLite state store (the store contract suite runs the outbox on PostgreSQL too)."""
    return sqlite_store


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
