"""The notification outbox in the state store: enqueue, claim under a lease, settle.

A message is one row per (channel, idempotency key): enqueuing the same key
twice for a channel keeps one row. Deliverers claim due rows under a lease
(an owner and an expiry); a deliverer killed mid-send leaves a lease that
expires, and the row is claimed again. PostgreSQL claims with ``FOR UPDATE
SKIP LOCKED``, SQLite under its single writer; both re-check the lease in the
claiming UPDATE, so two processes never hold the same row.

The store does not decide when to retry: the deliverer passes ``retry_at``
(its backoff policy), or None to mark the message dead. Times are passed in
by the caller's clock.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    or_,
    select,
    update,
)

from batchpilot.store.records import aware
from batchpilot.store.tables import metadata
from batchpilot.store.upserts import dialect_insert

outbox = Table(
    "bp_outbox",
    metadata,
    Column("outbox_id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(200), nullable=False),
    Column("idempotency_key", String(300), nullable=False),
    Column("message", JSON, nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    UniqueConstraint("channel", "idempotency_key", name="uq_bp_outbox_channel_key"),
    Index("ix_bp_outbox_due", "state", "next_attempt_at"),
)


class OutboxState(StrEnum):
    """Where a notification is: waiting (maybe leased), delivered, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"

    def is_terminal(self) -> bool:
        """True once nothing more will be sent."""
        return self is not OutboxState.PENDING


@dataclass(frozen=True)
class OutboxRecord:
    """One notification for one channel as stored."""

    outbox_id: int
    channel: str
    idempotency_key: str
    message: dict[str, Any]
    state: OutboxState
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"outbox times must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _record(row: Any) -> OutboxRecord:
    return OutboxRecord(
        outbox_id=row["outbox_id"],
        channel=row["channel"],
        idempotency_key=row["idempotency_key"],
        message=row["message"],
        state=OutboxState(row["state"]),
        attempts=row["attempts"],
        created_at=aware(row["created_at"]),  # type: ignore[arg-type]
        next_attempt_at=aware(row["next_attempt_at"]),  # type: ignore[arg-type]
        lease_owner=row["lease_owner"],
        lease_expires_at=aware(row["lease_expires_at"]),
        delivered_at=aware(row["delivered_at"]),
        last_error=row["last_error"],
    )


def insert_notification(
    conn: Any, *, channel: str, idempotency_key: str, message: Mapping[str, Any], now: datetime
) -> bool:
    """Queue one notification on ``conn``, inside the caller's transaction (so the
    decision to notify and the message commit together). Returns False when the
    channel already has a message with this key (it is left as it is)."""
    values = {
        "channel": channel,
        "idempotency_key": idempotency_key,
        "message": dict(message),
        "state": OutboxState.PENDING.value,
        "attempts": 0,
        "created_at": _utc(now),
        "next_attempt_at": _utc(now),
    }
    return conn.execute(_insert_once(conn.dialect.name), values).first() is not None


@functools.cache
def _insert_once(dialect: str) -> Any:
    """Insert a message unless its (channel, key) is queued already; RETURNING says whether a
    row went in (rowcount is not reliable with RETURNING). Built once per dialect."""
    return (
        dialect_insert(dialect, outbox)
        .values(
            {
                name: bindparam(name, type_=outbox.c[name].type)
                for name in (
                    "channel",
                    "idempotency_key",
                    "message",
                    "state",
                    "attempts",
                    "created_at",
                    "next_attempt_at",
                )
            }
        )
        .on_conflict_do_nothing()
        .returning(outbox.c.outbox_id)
    )


def _claimable(now: datetime) -> Any:
    return (outbox.c.state == OutboxState.PENDING.value) & or_(
        outbox.c.lease_expires_at.is_(None), outbox.c.lease_expires_at <= now
    )


class OutboxStore:
    """The outbox methods of :class:`~batchpilot.store.RunStore` (a mixin)."""

    engine: Any

    def _begin(self) -> Any:  # provided by RunStore
        raise NotImplementedError

    def _connect(self) -> Any:  # provided by RunStore
        raise NotImplementedError

    def enqueue_notification(
        self, *, channel: str, idempotency_key: str, message: Mapping[str, Any], now: datetime
    ) -> bool:
        """Queue a notification, due at ``now``; False if the channel already has this key."""
        with self._begin() as conn:
            return insert_notification(
                conn, channel=channel, idempotency_key=idempotency_key, message=message, now=now
            )

    def enqueue_notifications(
        self,
        channels: Sequence[str],
        *,
        idempotency_key: str,
        message: Mapping[str, Any],
        now: datetime,
    ) -> list[str]:
        """Queue one message for several channels in one transaction; returns the
        channels it was new for."""
        with self._begin() as conn:
            return [
                channel
                for channel in channels
                if insert_notification(
                    conn,
                    channel=channel,
                    idempotency_key=idempotency_key,
                    message=message,
                    now=now,
                )
            ]

    def claim_notifications(
        self, *, owner: str, now: datetime, lease_s: float, limit: int = 100
    ) -> list[OutboxRecord]:
        """Lease up to ``limit`` due messages (pending, due by ``now``, not leased or with
        an expired lease) to ``owner`` until ``now + lease_s``, oldest due first.

        ``owner`` must be unique per call (the deliverer makes one): it is how
        the results are settled. Safe with several processes on one store.
        """
        now = _utc(now)
        due = (
            select(outbox.c.outbox_id)
            .where(outbox.c.next_attempt_at <= now, _claimable(now))
            .order_by(outbox.c.next_attempt_at, outbox.c.outbox_id)
            .limit(limit)
        )
        with self._begin() as conn:
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(
                update(outbox)
                .where(outbox.c.outbox_id.in_(ids), _claimable(now))
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_s))
            )
            rows = conn.execute(
                select(outbox)
                .where(outbox.c.outbox_id.in_(ids), outbox.c.lease_owner == owner)
                .order_by(outbox.c.next_attempt_at, outbox.c.outbox_id)
            ).mappings()
            return [_record(r) for r in rows]

    def _settle(self, outbox_ids: Sequence[int], owner: str, **values: Any) -> int:
        if not outbox_ids:
            return 0
        with self._begin() as conn:
            result = conn.execute(
                update(outbox)
                .where(
                    outbox.c.outbox_id.in_(list(outbox_ids)),
                    outbox.c.lease_owner == owner,
                    outbox.c.state == OutboxState.PENDING.value,
                )
                .values(lease_owner=None, lease_expires_at=None, **values)
            )
            return int(result.rowcount)

    def mark_notifications_delivered(
        self, outbox_ids: Sequence[int], *, owner: str, now: datetime
    ) -> int:
        """Record messages ``owner`` sent; returns how many it still held the lease of."""
        return self._settle(
            outbox_ids,
            owner,
            state=OutboxState.DELIVERED.value,
            delivered_at=_utc(now),
            attempts=outbox.c.attempts + 1,
        )

    def mark_notification_failed(
        self, outbox_id: int, *, owner: str, error: str, retry_at: datetime | None
    ) -> bool:
        """Record a failed send: due again at ``retry_at``, or dead when it is None.
        False if ``owner`` no longer held the lease (someone else settles it)."""
        values: dict[str, Any] = {"last_error": error, "attempts": outbox.c.attempts + 1}
        if retry_at is None:
            values["state"] = OutboxState.DEAD.value
        else:
            values["next_attempt_at"] = _utc(retry_at)
        return self._settle([outbox_id], owner, **values) == 1

    def release_notifications(
        self, outbox_ids: Sequence[int], *, owner: str, retry_at: datetime, note: str | None = None
    ) -> int:
        """Give messages back unsent, due at ``retry_at``, without counting an attempt
        (their channel was found down on an earlier message, or time ran out)."""
        values: dict[str, Any] = {"next_attempt_at": _utc(retry_at)}
        if note is not None:
            values["last_error"] = note
        return self._settle(outbox_ids, owner, **values)

    def outbox_backlog(self, *, channel: str | None = None) -> int:
        """How many messages wait to be delivered (pending, leased or not)."""
        query = select(func.count()).where(outbox.c.state == OutboxState.PENDING.value)
        if channel is not None:
            query = query.where(outbox.c.channel == channel)
        with self._connect() as conn:
            return int(conn.execute(query).scalar_one())

    def outbox_counts(self) -> dict[OutboxState, int]:
        """Messages per state (every state present, zero when none)."""
        query = select(outbox.c.state, func.count()).group_by(outbox.c.state)
        counts = dict.fromkeys(OutboxState, 0)
        with self._connect() as conn:
            for state, count in conn.execute(query):
                counts[OutboxState(state)] = int(count)
        return counts

    def list_notifications(
        self,
        *,
        channel: str | None = None,
        states: Sequence[OutboxState] | None = None,
        limit: int = 1000,
    ) -> list[OutboxRecord]:
        """Messages, oldest first, optionally of one channel or in some states."""
        query = select(outbox).order_by(outbox.c.outbox_id).limit(limit)
        if channel is not None:
            query = query.where(outbox.c.channel == channel)
        if states:
            query = query.where(outbox.c.state.in_([s.value for s in states]))
        with self._connect() as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def get_notification(self, channel: str, idempotency_key: str) -> OutboxRecord | None:
        """The channel's message with this key, if queued."""
        query = select(outbox).where(
            outbox.c.channel == channel, outbox.c.idempotency_key == idempotency_key
        )
        with self._connect() as conn:
            row = conn.execute(query).mappings().first()
        return _record(row) if row is not None else None
