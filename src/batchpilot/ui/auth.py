"""Who is looking: the session cookie, the token behind it, scopes and CSRF checks.

A session is valid while its token is (re-read on every request): revoking the
token logs its browsers out on their next click. Reading needs the ``read``
scope, the run page's buttons and triggers ``run``, pause/unpause ``admin``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from fastapi import HTTPException, Request, Response

from batchpilot.errors import TokenError
from batchpilot.store import RunStore
from batchpilot.store.tokens import TokenRecord, TokenScope
from batchpilot.ui.sessions import COOKIE_NAME, Session, SessionRegistry

LOGIN_CSRF_COOKIE = "bp_login_csrf"


@dataclass(frozen=True)
class Viewer:
    """A logged-in browser: its session and the token it logged in with."""

    session: Session
    token: TokenRecord

    def can(self, scope: TokenScope) -> bool:
        """True when the token's scope includes ``scope``."""
        return self.token.scope.allows(scope)


class Gate:
    """Finds the viewer of a request, and opens and closes sessions."""

    def __init__(
        self, store: RunStore, sessions: SessionRegistry, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.clock = clock

    def viewer_or_none(self, request: Request) -> Viewer | None:
        """The request's viewer; None without a live session or with a token no longer
        valid (its session is then ended)."""
        now = self.clock()
        session = self.sessions.touch(request.cookies.get(COOKIE_NAME), now)
        if session is None:
            return None
        try:
            token = self.store.tokens.get(session.token_name)
        except TokenError:
            token = None
        if token is None or not token.is_valid(now):
            self.sessions.close(session.session_id)
            return None
        return Viewer(session, token)

    def viewer(self, request: Request) -> Viewer:
        """The FastAPI dependency of every page: the viewer, else a redirect (303) to the
        login page that comes back here."""
        viewer = self.viewer_or_none(request)
        if viewer is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(
                status_code=303,
                detail="log in first",
                headers={"Location": f"/login?next={quote(target, safe='')}"},
            )
        return viewer

    def log_in(self, secret: str) -> Session | None:
        """A new session for the valid token whose secret this is; None otherwise."""
        token = self.store.tokens.authenticate(secret.strip(), now=self.clock())
        if token is None:
            return None
        return self.sessions.open(token.name, self.clock())


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure when the request came by https;
    a browser-session cookie (no expiry)."""
    response.set_cookie(
        COOKIE_NAME,
        session.session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    """Remove the session cookie from the browser."""
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def login_csrf(request: Request) -> str:
    """The login form's CSRF token: the browser's ``bp_login_csrf`` cookie, or a new one
    (double submit: the form must carry the cookie's value)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def set_login_csrf_cookie(response: Response, request: Request, value: str) -> None:
    """Keep the login form's CSRF token in a strict, HttpOnly cookie."""
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
    )


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


__all__ = [
    "LOGIN_CSRF_COOKIE",
    "Gate",
    "Viewer",
    "clear_session_cookie",
    "login_csrf",
    "safe_next",
    "set_login_csrf_cookie",
    "set_session_cookie",
]
