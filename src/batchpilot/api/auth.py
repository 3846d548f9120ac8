"""Bearer tokens: who may call what.

Every route but ``/health`` depends on :func:`require` with the smallest
scope it needs: ``read`` to look, ``run`` to start or stop work, ``admin`` to
pause schedules and start backfills. The token is looked up on every request
(by its SHA-256, compared in constant time by the store), so a revoked or
expired token stops working on the next request. Runs never hold a token.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from batchpilot.api.problems import Problem
from batchpilot.api.state import read_store
from batchpilot.store.tokens import TokenRecord, TokenScope

#: The OpenAPI security scheme; errors are ours (problem details), not FastAPI's.
bearer = HTTPBearer(auto_error=False, description="an API token: batchpilot tokens create")

#: The OpenAPI extension naming the scope a route needs (read by the tests and clients).
SCOPE_EXTENSION = "x-required-scope"

_CHALLENGE = 'Bearer realm="batchpilot"'


def _unauthorized(detail: str, error: str | None) -> Problem:
    challenge = f'{_CHALLENGE}, error="{error}"' if error else _CHALLENGE
    return Problem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": challenge})


def require(scope: TokenScope) -> Callable[..., TokenRecord]:
    """A dependency: the request's token, which must be valid and allow ``scope``.

    Raises a 401 problem (with ``WWW-Authenticate``) for a missing, unknown,
    revoked or expired token, and 403 when its scope is smaller than ``scope``.

    The dependency is async and reads the token on the event loop when the store is
    SQLite: one indexed row (well under a millisecond), where a sync dependency would
    cost every request a hand-off to the thread pool and back (a thread wake-up each
    way, which on a busy machine is what the latency is made of). On PostgreSQL the
    read goes to the thread pool (:func:`read_store`), so requests waiting on the
    server overlap.
    """

    async def authorized(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> TokenRecord:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise _unauthorized("send an API token: Authorization: Bearer <token>", None)
        store = request.app.state.api.store
        secret = credentials.credentials
        token = await read_store(store, lambda: store.tokens.authenticate(secret))
        if token is None:
            raise _unauthorized(
                "the token is unknown, revoked or expired (batchpilot tokens list)",
                "invalid_token",
            )
        if not token.scope.allows(scope):
            raise Problem(
                403,
                f"token '{token.name}' has scope '{token.scope.value}'; this needs '{scope.value}'",
                slug="forbidden",
            )
        return token

    return authorized


def scoped(scope: TokenScope) -> dict[str, object]:
    """Route keyword arguments for a route that needs ``scope``: the dependency, and the
    scope named in the OpenAPI document."""
    return {
        "dependencies": [Depends(require(scope))],
        "openapi_extra": {SCOPE_EXTENSION: scope.value},
    }


__all__ = ["SCOPE_EXTENSION", "bearer", "require", "scoped"]
