"""Dashboard sessions and settings as plain objects: idle sessions end, notices are
shown once, the time zone setting names the variable when it is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from batchpilot.errors import BatchpilotError
from batchpilot.ui.auth import safe_next
from batchpilot.ui.context import DashboardSettings
from batchpilot.ui.sessions import SessionRegistry

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_a_session_lives_while_used_and_ends_after_its_idle_time() -> None:
    registry = SessionRegistry(idle=timedelta(hours=1))
    session = registry.open("alice", NOW)
    assert registry.touch(session.session_id, NOW + timedelta(minutes=50)) is not None
    assert registry.touch(session.session_id, NOW + timedelta(minutes=100)) is not None
    assert registry.touch(session.session_id, NOW + timedelta(minutes=161)) is None
    assert registry.touch(session.session_id, NOW + timedelta(minutes=162)) is None


def test_sessions_have_distinct_random_ids_and_csrf_tokens() -> None:
    registry = SessionRegistry(idle=timedelta(hours=1))
    one, two = registry.open("alice", NOW), registry.open("alice", NOW)
    assert len({one.session_id, two.session_id, one.csrf_token, two.csrf_token}) == 4
    assert one.csrf_matches(one.csrf_token)
    assert not one.csrf_matches(two.csrf_token) and not one.csrf_matches(None)


def test_a_notice_is_shown_once_and_dies_with_its_session() -> None:
    registry = SessionRegistry(idle=timedelta(hours=1))
    session = registry.open("alice", NOW)
    registry.notify(session.session_id, "retry handed to a worker")
    assert registry.take_notice(session.session_id) == "retry handed to a worker"
    assert registry.take_notice(session.session_id) is None
    registry.notify(session.session_id, "later")
    registry.close(session.session_id)
    assert registry.take_notice(session.session_id) is None
    assert registry.touch(session.session_id, NOW) is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/runs?status=failed", "/runs?status=failed"),
        (None, "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
    ],
)
def test_after_login_the_browser_only_goes_to_a_path_here(
    target: str | None, expected: str
) -> None:
    assert safe_next(target) == expected


def test_the_time_zone_comes_from_batchpilot_timezone() -> None:
    assert DashboardSettings.from_env({}).timezone.key == "UTC"
    paris = DashboardSettings.from_env({"BATCHPILOT_TIMEZONE": "Europe/Paris"})
    assert paris.timezone.key == "Europe/Paris"
    with pytest.raises(BatchpilotError, match="BATCHPILOT_TIMEZONE must be an IANA time zone"):
        DashboardSettings.from_env({"BATCHPILOT_TIMEZONE": "Mars/Olympus"})
