"""Notifications: channels (email, Slack, Teams, webhooks) and a durable outbox in the store.

Runs and the monitor build a :class:`Message` and :func:`enqueue` it; ``serve``
calls :func:`deliver_due` on a clock tick; ``batchpilot notify test CHANNEL``
calls :func:`send_test_message`.
"""

from batchpilot.clock import Clock, SystemClock
from batchpilot.notify.channels import (
    Channel,
    EmailChannel,
    SlackChannel,
    TeamsChannel,
    WebhookChannel,
    parse_channel,
)
from batchpilot.notify.message import Fact, Message, Severity, alert_facts
from batchpilot.notify.outbox import DeliveryFailure, DeliveryReport, deliver_due, enqueue
from batchpilot.notify.registry import ENV_PREFIX, NOTIFICATIONS_FILE, ChannelRegistry
from batchpilot.notify.retry import RetryPolicy
from batchpilot.notify.send import NotifyTestResult, send_message, send_test_message

__all__ = [
    "ENV_PREFIX",
    "NOTIFICATIONS_FILE",
    "Channel",
    "ChannelRegistry",
    "Clock",
    "DeliveryFailure",
    "DeliveryReport",
    "EmailChannel",
    "Fact",
    "Message",
    "NotifyTestResult",
    "RetryPolicy",
    "Severity",
    "SlackChannel",
    "SystemClock",
    "TeamsChannel",
    "WebhookChannel",
    "alert_facts",
    "deliver_due",
    "enqueue",
    "parse_channel",
    "send_message",
    "send_test_message",
]
