"""Sending one message to one channel, whatever its kind; and the test message."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime

from batchpilot.clock import Clock, SystemClock
from batchpilot.errors import DeliveryError
from batchpilot.notify.channels import (
    Channel,
    EmailChannel,
    HttpChannel,
    SlackChannel,
    TeamsChannel,
)
from batchpilot.notify.http_transport import DEFAULT_TIMEOUT_S, HttpPoster, post_payload
from batchpilot.notify.message import Fact, Message, Severity
from batchpilot.notify.render import json_body, render_slack, render_teams, render_webhook
from batchpilot.notify.smtp_transport import SmtpSessions, send_email


def render_http_body(channel: HttpChannel, message: Message) -> bytes:
    """The exact bytes POSTed to an HTTP channel for ``message``."""
    if isinstance(channel, SlackChannel):
        return json_body(render_slack(message))
    if isinstance(channel, TeamsChannel):
        return json_body(render_teams(message))
    return json_body(render_webhook(message))


def send_message(
    channel: Channel,
    message: Message,
    *,
    now: datetime,
    poster: HttpPoster | None = None,
    smtp: SmtpSessions | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Send ``message`` through ``channel`` once; raises :class:`DeliveryError`.

    ``poster`` and ``smtp`` keep HTTP and SMTP connections open across calls
    (one of each per thread); without them a connection is opened and closed
    for this message.
    """
    if isinstance(channel, EmailChannel):
        send_email(channel, message, now=now, timeout_s=timeout_s, sessions=smtp)
        return
    if not isinstance(channel, HttpChannel):
        raise DeliveryError(
            f"channel '{channel.name}' is of no kind batchpilot can send to", channel=channel.name
        )
    body = render_http_body(channel, message)
    if poster is not None:
        post_payload(poster, channel, body, idempotency_key=message.idempotency_key)
        return
    with HttpPoster(timeout_s) as own:
        post_payload(own, channel, body, idempotency_key=message.idempotency_key)


@dataclass(frozen=True)
class NotifyTestResult:
    """What ``batchpilot notify test CHANNEL`` reports: where it went and how."""

    channel: str
    kind: str
    masked_url: str
    ok: bool
    error: str | None = None
    idempotency_key: str = ""


def build_test_message(channel: Channel, now: datetime) -> Message:
    """The message ``batchpilot notify test`` sends: says what it is and where from."""
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    return Message(
        title=f"batchpilot test message for channel '{channel.name}'",
        summary=(
            "This is a test. If you can read it, batchpilot alerts sent to this channel "
            "reach you. Nothing needs to be done."
        ),
        idempotency_key=f"test:{channel.name}:{stamp}",
        severity=Severity.INFO,
        facts=(
            Fact("Channel", channel.name),
            Fact("Kind", channel.kind),
            Fact("Sent by", socket.gethostname()),
            Fact("Sent at", now.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ),
    )


def send_test_message(
    channel: Channel, *, clock: Clock | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> NotifyTestResult:
    """Send a test message straight to ``channel`` (not through the outbox), for
    ``batchpilot notify test CHANNEL``; never raises for a failed send, the result
    says what went wrong (secrets masked)."""
    now = (clock or SystemClock()).now()
    message = build_test_message(channel, now)
    try:
        send_message(channel, message, now=now, timeout_s=timeout_s)
    except DeliveryError as exc:
        return NotifyTestResult(
            channel=channel.name,
            kind=channel.kind,
            masked_url=channel.masked_url,
            ok=False,
            error=channel.redact(str(exc)),
            idempotency_key=message.idempotency_key,
        )
    return NotifyTestResult(
        channel=channel.name,
        kind=channel.kind,
        masked_url=channel.masked_url,
        ok=True,
        idempotency_key=message.idempotency_key,
    )
