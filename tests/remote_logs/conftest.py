"""A real S3-compatible server (moto, server mode) for the shipped-logs tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3_server import S3Server, moto_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto on 127.0.0.1, one per test session (per xdist worker)."""
    with moto_server() as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh bucket of this test."""
    return s3_server.new_bucket()


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS variables of the test server, set in this process too."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server.env()
