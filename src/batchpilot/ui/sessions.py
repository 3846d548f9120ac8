"""Dashboard sessions, held in memory: a random id (the cookie) maps to the token that
logged in and the session's CSRF secret.

Only the token's name is kept, never its secret; each request re-reads the
token (``store.tokens.get``), so a revoked or expired token ends its sessions
on the next click. A restart of the server ends every session (log in again).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

COOKIE_NAME = "bp_session"


@dataclass(frozen=True)
class Session:
    """One logged-in browser: the token's name, the CSRF secret of its forms, last use."""

    session_id: str
    token_name: str
    csrf_token: str
    last_seen: datetime

    def csrf_matches(self, presented: str | None) -> bool:
        """True when ``presented`` is this session's CSRF token (constant-time)."""
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.csrf_token.encode()
        )


class SessionRegistry:
    """The sessions of one server process (thread-safe)."""

    def __init__(self, *, idle: timedelta) -> None:
        self.idle = idle
        self._sessions: dict[str, Session] = {}
        self._notices: dict[str, str] = {}
        self._lock = threading.Lock()

    def open(self, token_name: str, now: datetime) -> Session:
        """A new session for the token ``token_name``."""
        session = Session(secrets.token_urlsafe(32), token_name, secrets.token_urlsafe(32), now)
        with self._lock:
            self._drop_idle(now)
            self._sessions[session.session_id] = session
        return session

    def touch(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session of this id, its last use set to ``now``; None when unknown or
        idle too long (then it is dropped)."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_seen > self.idle:
                del self._sessions[session_id]
                self._notices.pop(session_id, None)
                return None
            session = replace(session, last_seen=now)
            self._sessions[session_id] = session
            return session

    def close(self, session_id: str | None) -> None:
        """End a session (logout, or its token is no longer valid)."""
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)
                self._notices.pop(session_id, None)

    def notify(self, session_id: str, text: str) -> None:
        """Keep a sentence to show on the session's next page (the outcome of a button)."""
        with self._lock:
            if session_id in self._sessions:
                self._notices[session_id] = text

    def take_notice(self, session_id: str) -> str | None:
        """The sentence kept by :meth:`notify`, once."""
        with self._lock:
            return self._notices.pop(session_id, None)

    def _drop_idle(self, now: datetime) -> None:
        for key in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle]:
            del self._sessions[key]
            self._notices.pop(key, None)


__all__ = ["COOKIE_NAME", "Session", "SessionRegistry"]
