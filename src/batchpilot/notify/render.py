"""Chat and webhook payloads for a message: pure functions of the message.

Slack's limits (header 150 characters, section text 3,000, 10 fields of
2,000 each, button text 75) are respected by truncating, so a long value
never turns an alert into a 400 from Slack.
"""

from __future__ import annotations

import json
from typing import Any

from batchpilot.notify.message import Fact, Message, Severity

_SLACK_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":warning:",
    Severity.INFO: ":information_source:",
    Severity.RESOLVED: ":white_check_mark:",
}
_TEAMS_COLOR = {
    Severity.CRITICAL: "Attention",
    Severity.WARNING: "Warning",
    Severity.INFO: "Default",
    Severity.RESOLVED: "Good",
}
SLACK_MAX_FIELDS = 10
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
WEBHOOK_PAYLOAD_TYPE = "batchpilot.notification"
LINK_LABEL = "Open in batchpilot"


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup (links, mentions) in mrkdwn text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_field(fact: Fact) -> dict[str, str]:
    text = f"*{_slack_escape(fact.label)}*\n{_slack_escape(fact.value)}"
    return {"type": "mrkdwn", "text": truncate(text, 2000)}


def render_slack(message: Message) -> dict[str, Any]:
    """A Slack Block Kit message: header, summary, facts as fields, a link button, context."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": truncate(f"{_SLACK_EMOJI[message.severity]} {message.title}", 150),
                "emoji": True,
            },
        }
    ]
    if message.summary:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(_slack_escape(message.summary), 3000)},
            }
        )
    facts = list(message.facts)
    for start in range(0, len(facts), SLACK_MAX_FIELDS):
        chunk = facts[start : start + SLACK_MAX_FIELDS]
        blocks.append({"type": "section", "fields": [_slack_field(f) for f in chunk]})
    if message.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": LINK_LABEL},
                        "url": truncate(message.link, 3000),
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": truncate(f"batchpilot · {message.severity.value}", 3000),
                }
            ],
        }
    )
    return {"text": truncate(f"{message.subject}: {message.summary}", 3000), "blocks": blocks}


def render_teams_card(message: Message) -> dict[str, Any]:
    """The Adaptive Card (1.4): title, summary, facts as a FactSet, a link action."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": message.subject,
            "weight": "Bolder",
            "size": "Medium",
            "color": _TEAMS_COLOR[message.severity],
            "wrap": True,
        }
    ]
    if message.summary:
        body.append({"type": "TextBlock", "text": message.summary, "wrap": True})
    if message.facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [{"title": f.label, "value": f.value} for f in message.facts],
            }
        )
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    if message.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": LINK_LABEL, "url": message.link}]
    return card


def render_teams(message: Message) -> dict[str, Any]:
    """The card in the message envelope Teams incoming webhooks and workflows expect."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": ADAPTIVE_CARD_CONTENT_TYPE,
                "contentUrl": None,
                "content": render_teams_card(message),
            }
        ],
    }


def render_webhook(message: Message) -> dict[str, Any]:
    """The generic webhook's JSON: the whole message, with a type and a version."""
    return {"type": WEBHOOK_PAYLOAD_TYPE, "version": 1, **message.to_dict()}


def json_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact UTF-8 JSON."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
