"""API tokens in the state store, on SQLite and PostgreSQL: only a hash is kept, scopes are
ordered, revoked and expired tokens are refused on the next check."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from batchpilot.errors import TokenError
from batchpilot.store import RunStore
from batchpilot.store.records import utcnow
from batchpilot.store.tokens import TokenScope, api_tokens, parse_scope


def test_the_secret_is_returned_once_and_only_its_hash_is_stored(store: RunStore):
    record, secret = store.tokens.create("ci", TokenScope.RUN)
    assert secret.startswith("bp_") and len(secret) > 40
    assert record.name == "ci" and record.scope is TokenScope.RUN and secret.startswith(record.hint)
    with store.engine.connect() as conn:
        stored = [str(v) for row in conn.execute(select(api_tokens)) for v in row]
    assert not any(secret in value for value in stored)
    found = store.tokens.authenticate(secret)
    assert found is not None and found.name == "ci" and found.scope is TokenScope.RUN


def test_a_wrong_or_malformed_secret_matches_nothing(store: RunStore):
    _, secret = store.tokens.create("ci", TokenScope.READ)
    assert store.tokens.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.tokens.authenticate("") is None
    assert store.tokens.authenticate("Bearer " + secret) is None
    assert store.tokens.authenticate("bp_" + "x" * 5000) is None


def test_revoking_refuses_the_next_check(store: RunStore):
    _, secret = store.tokens.create("ci", TokenScope.ADMIN)
    assert store.tokens.authenticate(secret) is not None
    revoked = store.tokens.revoke("ci")
    assert revoked.revoked_at is not None and revoked.state(utcnow()) == "revoked"
    assert store.tokens.authenticate(secret) is None
    assert store.tokens.revoke("ci").revoked_at == revoked.revoked_at  # again: harmless


def test_an_expired_token_is_refused(store: RunStore):
    record, secret = store.tokens.create("short", TokenScope.READ, expires_in=timedelta(hours=1))
    assert record.expires_at is not None
    assert store.tokens.authenticate(secret, now=record.expires_at - timedelta(seconds=1))
    assert store.tokens.authenticate(secret, now=record.expires_at) is None
    assert record.state(record.expires_at) == "expired"


def test_last_use_is_recorded(store: RunStore):
    _, secret = store.tokens.create("ci", TokenScope.READ)
    assert store.tokens.get("ci").last_used_at is None
    store.tokens.authenticate(secret)
    assert store.tokens.get("ci").last_used_at is not None


def test_names_are_unique_and_checked(store: RunStore):
    store.tokens.create("ci", TokenScope.READ)
    with pytest.raises(TokenError, match="exists already"):
        store.tokens.create("ci", TokenScope.RUN)
    for bad in ["", "has space", "-dash-first", "x" * 101, "semi;colon", "quote'"]:
        with pytest.raises(TokenError, match="invalid token name"):
            store.tokens.create(bad, TokenScope.READ)
    with pytest.raises(TokenError, match="no token named 'nope'"):
        store.tokens.revoke("nope")
    assert [t.name for t in store.tokens.list()] == ["ci"]


def test_scopes_are_ordered_read_run_admin():
    read, run, admin = TokenScope.READ, TokenScope.RUN, TokenScope.ADMIN
    assert admin.allows(run) and admin.allows(read) and run.allows(read)
    assert not read.allows(run) and not run.allows(admin) and read.allows(read)
    assert parse_scope("run") is run
    with pytest.raises(TokenError, match="use one of read, run, admin"):
        parse_scope("root")
