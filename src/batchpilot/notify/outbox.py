"""Queueing notifications and delivering those that are due, through the store's outbox.

Runs and the monitor only :func:`enqueue` (one short insert); ``serve`` (or
any loop) calls :func:`deliver_due` on a clock tick. Each channel is sent to
from its own thread with bounded timeouts, so a channel that is down costs
one timeout per round and never holds up the others.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from batchpilot.clock import Clock
from batchpilot.errors import BatchpilotError, DeliveryError, UnknownChannel
from batchpilot.notify.channels import Channel
from batchpilot.notify.http_transport import DEFAULT_TIMEOUT_S, HttpPoster
from batchpilot.notify.message import Message
from batchpilot.notify.registry import ChannelRegistry, channel_key
from batchpilot.notify.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from batchpilot.notify.send import send_message
from batchpilot.notify.smtp_transport import SmtpSessions
from batchpilot.store.outbox import OutboxRecord, OutboxStore

log = logging.getLogger("batchpilot.notify")

#: Messages claimed per round.
DEFAULT_BATCH = 200
#: How long a claim holds its messages; a deliverer killed mid-send frees them after it.
DEFAULT_LEASE_S = 120.0
#: Channels sent to at once (each on up to its ``lanes`` connections).
DEFAULT_PARALLEL_CHANNELS = 8
_MARK_EVERY = 100


@dataclass(frozen=True)
class DeliveryFailure:
    """One failed send: the channel, the message's key, the error (secrets masked), and
    when it is tried again (None: it is dead)."""

    channel: str
    idempotency_key: str
    error: str
    retry_at: datetime | None


@dataclass(frozen=True)
class DeliveryReport:
    """What one :func:`deliver_due` round did."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    released: int = 0
    failures: tuple[DeliveryFailure, ...] = field(default=())

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            claimed=self.claimed + other.claimed,
            delivered=self.delivered + other.delivered,
            retrying=self.retrying + other.retrying,
            dead=self.dead + other.dead,
            released=self.released + other.released,
            failures=self.failures + other.failures,
        )


def enqueue(
    store: OutboxStore, message: Message, channels: Iterable[str], clock: Clock
) -> list[str]:
    """Queue ``message`` for each channel (names as routed; ``-`` and ``_`` alike) in
    one transaction; returns the channels it was new for. The same key again is a
    no-op per channel."""
    return store.enqueue_notifications(
        list(dict.fromkeys(channel_key(n) for n in channels)),
        idempotency_key=message.idempotency_key,
        message=message.to_dict(),
        now=clock.now(),
    )


@dataclass(frozen=True)
class _Round:
    store: OutboxStore
    clock: Clock
    owner: str
    policy: RetryPolicy
    rng: random.Random
    timeout_s: float
    lease_s: float


@dataclass
class _ChannelDown:
    """Shared by the lanes of one channel: set when one of them found it unreachable."""

    event: threading.Event = field(default_factory=threading.Event)
    retry_at: datetime | None = None


def deliver_due(
    store: OutboxStore,
    channels: ChannelRegistry,
    clock: Clock,
    *,
    limit: int = DEFAULT_BATCH,
    lease_s: float = DEFAULT_LEASE_S,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    rng: random.Random | None = None,
    parallel_channels: int = DEFAULT_PARALLEL_CHANNELS,
) -> DeliveryReport:
    """Claim up to ``limit`` due messages and send them; returns what happened.

    Up to ``parallel_channels`` channels are sent to at once. Chat and email
    channels send on one connection, in order; a webhook sends its first
    message alone, then the rest over four connections (lanes), the messages
    of one ``group`` in order on one lane. Sent messages are marked
    delivered; a failed one is due again after the policy's backoff, or dead
    after a permanent error or ``policy.max_age``. When a channel
    cannot be reached, its other messages this round are given back unsent,
    due with the failed one. A message for a channel that is not (or no
    longer) defined is retried too, so defining it delivers it.

    Raises :class:`~batchpilot.errors.StoreError` when the state store fails;
    nothing is lost then: messages not settled come back when their lease
    (``lease_s``) expires, and are sent again with the same idempotency key.
    """
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    claimed = store.claim_notifications(owner=owner, now=clock.now(), lease_s=lease_s, limit=limit)
    if not claimed:
        return DeliveryReport()
    ctx = _Round(store, clock, owner, policy, rng or random.Random(), timeout_s, lease_s)
    report = DeliveryReport(claimed=len(claimed))
    by_channel: dict[str, list[OutboxRecord]] = {}
    for record in claimed:
        by_channel.setdefault(record.channel, []).append(record)
    work: list[tuple[Channel, list[OutboxRecord]]] = []
    for name, records in by_channel.items():
        try:
            work.append((channels.get(name), records))
        except UnknownChannel as exc:
            for record in records:
                report = report + _fail(ctx, record, str(exc), permanent=False)
    if work:
        workers = max(1, min(parallel_channels, len(work)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bp-notify") as pool:
            futures = [pool.submit(_deliver_to_channel, ctx, *item) for item in work]
            for future in futures:
                report = report + future.result()
    if report.failures:
        log.warning(
            "notifications: %d delivered, %d to retry, %d dead, %d given back",
            report.delivered,
            report.retrying,
            report.dead,
            report.released,
        )
    return report


def _deliver_to_channel(
    ctx: _Round, channel: Channel, records: list[OutboxRecord]
) -> DeliveryReport:
    """The first message alone (so a channel that is down costs one attempt), then the
    rest over the channel's lanes."""
    down = _ChannelDown()
    if channel.lanes <= 1:  # one lane: its first message is the probe
        return _deliver_lane(ctx, channel, records, down)
    report = _deliver_lane(ctx, channel, records[:1], down)
    lanes = _split_lanes(records[1:], channel.lanes)
    if len(lanes) <= 1:
        return report + _deliver_lane(ctx, channel, lanes[0] if lanes else [], down)
    with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="bp-notify-lane") as pool:
        futures = [pool.submit(_deliver_lane, ctx, channel, lane, down) for lane in lanes]
        for future in futures:
            report = report + future.result()
    return report


def _split_lanes(records: list[OutboxRecord], lanes: int) -> list[list[OutboxRecord]]:
    """Spread a channel's messages over ``lanes``, keeping each group on one lane in order."""
    if lanes <= 1 or len(records) <= 1:
        return [records] if records else []
    split: list[list[OutboxRecord]] = [[] for _ in range(lanes)]
    for record in records:
        group = record.message.get("group") or record.idempotency_key
        split[zlib.crc32(str(group).encode("utf-8")) % lanes].append(record)
    return [lane for lane in split if lane]


def _deliver_lane(
    ctx: _Round, channel: Channel, records: Sequence[OutboxRecord], down: _ChannelDown
) -> DeliveryReport:
    deadline = time.monotonic() + ctx.lease_s / 2
    report = DeliveryReport()
    sent: list[int] = []
    with HttpPoster(ctx.timeout_s) as poster, SmtpSessions(ctx.timeout_s) as smtp:
        for index, record in enumerate(records):
            if down.event.is_set():  # another lane found the channel unreachable
                note = f"not tried: channel '{channel.name}' was unreachable"
                retry_at = down.retry_at or ctx.clock.now()
                report = report + _release(ctx, records[index:], retry_at, note)
                break
            if time.monotonic() > deadline:  # finish well inside the lease
                report = report + _release(ctx, records[index:], ctx.clock.now(), None)
                break
            failure = _send_one(ctx, channel, record, poster, smtp)
            if failure is None:
                sent.append(record.outbox_id)
                if len(sent) >= _MARK_EVERY:
                    report = report + _mark_sent(ctx, sent)
                    sent = []
                continue
            report = report + _mark_sent(ctx, sent) + _fail(ctx, record, *failure)
            sent = []
            if failure[2]:  # unreachable: the rest would wait for the same timeout
                down.retry_at = report.failures[-1].retry_at
                down.event.set()
    return report + _mark_sent(ctx, sent)


def _send_one(
    ctx: _Round, channel: Channel, record: OutboxRecord, poster: HttpPoster, smtp: SmtpSessions
) -> tuple[str, bool, bool] | None:
    """Send one message; None when sent, else (error, permanent, unreachable)."""
    try:
        message = Message.from_dict(record.message)
        send_message(
            channel,
            message,
            now=ctx.clock.now(),
            poster=poster,
            smtp=smtp,
            timeout_s=ctx.timeout_s,
        )
    except DeliveryError as exc:
        return channel.redact(str(exc)), exc.permanent, exc.unreachable
    except (BatchpilotError, KeyError, TypeError, ValueError) as exc:
        # A stored message that no longer reads as a Message can never be sent.
        error = f"message cannot be rendered: {type(exc).__name__}: {exc}"
        return channel.redact(error), True, False
    return None


def _mark_sent(ctx: _Round, outbox_ids: list[int]) -> DeliveryReport:
    if not outbox_ids:
        return DeliveryReport()
    marked = ctx.store.mark_notifications_delivered(
        outbox_ids, owner=ctx.owner, now=ctx.clock.now()
    )
    if marked < len(outbox_ids):
        log.warning(
            "notifications: %d sent after their lease ran out (another deliverer may resend "
            "them; receivers see the same Idempotency-Key)",
            len(outbox_ids) - marked,
        )
    return DeliveryReport(delivered=len(outbox_ids))


def _fail(
    ctx: _Round, record: OutboxRecord, error: str, permanent: bool, _unreachable: bool = False
) -> DeliveryReport:
    now = ctx.clock.now()
    retry_at = ctx.policy.next_attempt_at(
        failures=record.attempts + 1,
        enqueued_at=record.created_at,
        now=now,
        permanent=permanent,
        rng=ctx.rng,
    )
    ctx.store.mark_notification_failed(
        record.outbox_id, owner=ctx.owner, error=error, retry_at=retry_at
    )
    failure = DeliveryFailure(record.channel, record.idempotency_key, error, retry_at)
    if retry_at is None:
        log.error(
            "notification %s to '%s' is dead: %s", record.idempotency_key, record.channel, error
        )
        return DeliveryReport(dead=1, failures=(failure,))
    log.warning(
        "notification %s to '%s' failed, retry at %s: %s",
        record.idempotency_key,
        record.channel,
        retry_at.isoformat(timespec="seconds"),
        error,
    )
    return DeliveryReport(retrying=1, failures=(failure,))


def _release(
    ctx: _Round, records: Sequence[OutboxRecord], retry_at: datetime, note: str | None
) -> DeliveryReport:
    if not records:
        return DeliveryReport()
    ctx.store.release_notifications(
        [r.outbox_id for r in records], owner=ctx.owner, retry_at=retry_at, note=note
    )
    return DeliveryReport(released=len(records))
