"""API tokens in the state store: a name, a scope, an expiry, and only a hash of the secret.

A token's secret is shown once, when it is created (``bp_`` followed by 43
URL-safe characters, 256 random bits); the store keeps its SHA-256, which is
enough for a secret of that entropy (no salt or slow hash needed: there is no
dictionary to try). Checking a presented secret looks its digest up and
compares it in constant time. Revoking or expiring a token takes effect on the
next request; no run ever depends on a token.

Scopes are ordered: ``read`` (look) < ``run`` (start, cancel, retry…) <
``admin`` (tokens, pause, backfill). Reached as ``store.tokens``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)

from batchpilot.errors import TokenError
from batchpilot.store.records import aware, utcnow
from batchpilot.store.tables import metadata
from batchpilot.store.transaction import Wrapped

SECRET_PREFIX = "bp_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: ``last_used_at`` is written at most this often per token (not on every request)
LAST_USED_RESOLUTION = timedelta(minutes=1)

api_tokens = Table(
    "bp_api_tokens",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("scope", String(10), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("hint", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
)

#: The token of a secret's digest, built once: this runs on every API request.
_BY_DIGEST = select(api_tokens).where(api_tokens.c.secret_sha256 == bindparam("digest"))


class TokenScope(StrEnum):
    """What a token may do; each scope includes the ones before it."""

    READ = "read"
    RUN = "run"
    ADMIN = "admin"

    def allows(self, needed: TokenScope) -> bool:
        """True when this scope is ``needed`` or larger."""
        order = list(TokenScope)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class TokenRecord:
    """A token as stored (never its secret): ``hint`` is the secret's first characters."""

    name: str
    scope: TokenScope
    hint: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def is_valid(self, now: datetime) -> bool:
        """Not revoked and not expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def state(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.is_valid(now) else "expired"


def secret_digest(secret: str) -> str:
    """The SHA-256 (hex) of a token secret: what the store keeps."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_scope(value: str) -> TokenScope:
    """``read``, ``run`` or ``admin``; raises :class:`TokenError` naming the value."""
    try:
        return TokenScope(value)
    except ValueError:
        choices = ", ".join(s.value for s in TokenScope)
        raise TokenError(f"unknown token scope {value!r}: use one of {choices}") from None


class TokenStore:
    """Create, list, revoke and check API tokens; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, name: str, scope: TokenScope, *, expires_in: timedelta | None = None
    ) -> tuple[TokenRecord, str]:
        """A new token and its secret (the only time the secret exists outside the caller).

        Raises :class:`TokenError` for a malformed name, a name already taken, or an
        expiry that is not in the future.
        """
        if not NAME_PATTERN.fullmatch(name):
            raise TokenError(
                f"invalid token name {name!r}: 1 to 100 letters, digits, '_', '.', '-', "
                "starting with a letter or digit"
            )
        if expires_in is not None and expires_in <= timedelta(0):
            raise TokenError(f"a token's expiry must be in the future, got {expires_in}")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        row = {
            "name": name,
            "scope": scope.value,
            "secret_sha256": secret_digest(secret),
            "hint": secret[: len(SECRET_PREFIX) + 4],
            "created_at": now,
            "expires_at": now + expires_in if expires_in is not None else None,
        }
        with Wrapped(self.engine, begin=True) as conn:
            taken = conn.execute(select(api_tokens.c.name).where(api_tokens.c.name == name)).first()
            if taken is None:
                conn.execute(insert(api_tokens).values(**row))
        if taken is not None:  # (two creates racing on one name: the loser's insert fails)
            raise TokenError(
                f"a token named '{name}' exists already (see: batchpilot tokens list; "
                f"revoke it with: batchpilot tokens revoke {name})"
            )
        return self.get(name), secret

    def get(self, name: str) -> TokenRecord:
        """The token of this name; raises :class:`TokenError` when there is none."""
        with Wrapped(self.engine, begin=False) as conn:
            row = (
                conn.execute(select(api_tokens).where(api_tokens.c.name == name)).mappings().first()
            )
        if row is None:
            raise TokenError(f"no token named '{name}' (see: batchpilot tokens list)")
        return _record(row)

    def list(self) -> list[TokenRecord]:
        """Every token, revoked and expired ones included, by name."""
        with Wrapped(self.engine, begin=False) as conn:
            rows = conn.execute(select(api_tokens).order_by(api_tokens.c.name)).mappings().all()
        return [_record(row) for row in rows]

    def revoke(self, name: str) -> TokenRecord:
        """Revoke the token of this name (again is harmless); effective on the next request."""
        with Wrapped(self.engine, begin=True) as conn:
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return self.get(name)

    def authenticate(self, secret: str, *, now: datetime | None = None) -> TokenRecord | None:
        """The valid token whose secret this is, else None (unknown, revoked or expired)."""
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
            return None
        digest = secret_digest(secret)
        now = now or utcnow()
        with Wrapped(self.engine, begin=False) as conn:
            row = conn.execute(_BY_DIGEST, {"digest": digest}).mappings().first()
        if row is None or not hmac.compare_digest(row["secret_sha256"], digest):
            return None
        record = _record(row)
        if not record.is_valid(now):
            return None
        if record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION:
            with Wrapped(self.engine, begin=True) as conn:
                conn.execute(
                    update(api_tokens)
                    .where(api_tokens.c.name == record.name)
                    .values(last_used_at=now)
                )
        return record


def _record(row: Mapping[str, Any]) -> TokenRecord:
    created_at = aware(row["created_at"])
    assert created_at is not None  # the column is NOT NULL
    return TokenRecord(
        name=row["name"],
        scope=TokenScope(row["scope"]),
        hint=row["hint"],
        created_at=created_at,
        expires_at=aware(row["expires_at"]),
        revoked_at=aware(row["revoked_at"]),
        last_used_at=aware(row["last_used_at"]),
    )


__all__ = [
    "TokenRecord",
    "TokenScope",
    "TokenStore",
    "parse_scope",
    "secret_digest",
]
