"""An email for a message: a plain-text and an HTML part (Jinja2, HTML autoescaped)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import TYPE_CHECKING

from batchpilot.notify.message import Message, Severity

if TYPE_CHECKING:
    from jinja2 import Template

_TEXT_TEMPLATE = """\
{{ message.title }}

{% if message.summary %}{{ message.summary }}

{% endif %}{% for fact in message.facts %}{{ (fact.label ~ ':').ljust(width) }} {{ fact.value }}
{% endfor %}{% if message.link %}
{{ message.link }}
{% endif %}
batchpilot · {{ message.severity.value }}
"""

_HTML_TEMPLATE = """\
<!DOCTYPE html>
<html><body style="font-family: sans-serif; color: #1f2328;">
<h2 style="margin: 0 0 8px 0; color: {{ color }};">{{ message.title }}</h2>
{% if message.summary %}<p style="font-size: 15px;">{{ message.summary }}</p>
{% endif %}{% if message.facts %}<table style="border-collapse: collapse;">
{% for fact in message.facts %}<tr><th style="text-align: left; padding: 2px 12px 2px 0;">\
{{ fact.label }}</th><td style="padding: 2px 0;">{{ fact.value }}</td></tr>
{% endfor %}</table>
{% endif %}{% if message.link %}<p><a href="{{ message.link }}">Open in batchpilot</a></p>
{% endif %}<p style="color: #656d76; font-size: 12px;">batchpilot · {{ message.severity.value }}</p>
</body></html>
"""

_COLORS = {
    Severity.CRITICAL: "#cf222e",
    Severity.WARNING: "#9a6700",
    Severity.INFO: "#1f2328",
    Severity.RESOLVED: "#1a7f37",
}


@functools.cache
def _templates() -> tuple[Template, Template]:
    """The text and HTML templates, compiled once, when the first email is rendered (a
    process that sends none, such as ``batchpilot run``, never loads Jinja2)."""
    from jinja2 import Environment, StrictUndefined

    text = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
    html = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
    return text.from_string(_TEXT_TEMPLATE), html.from_string(_HTML_TEMPLATE)


@dataclass(frozen=True)
class RenderedEmail:
    """The subject and the two bodies of one email."""

    subject: str
    text: str
    html: str


def render_email(message: Message) -> RenderedEmail:
    """The email's subject, plain text (facts aligned) and HTML (every value escaped)."""
    width = max((len(f.label) + 1 for f in message.facts), default=0)
    text, html = _templates()
    return RenderedEmail(
        subject=message.subject,
        text=text.render(message=message, width=width),
        html=html.render(message=message, color=_COLORS[message.severity]),
    )


def message_id_for(message: Message, sender: str) -> str:
    """The email ``Message-ID``: the same for every delivery of the same message, so a
    mail client shows a redelivery as the one message it is."""
    digest = hashlib.sha256(message.idempotency_key.encode("utf-8")).hexdigest()[:32]
    domain = sender.rpartition("@")[2].strip(">") or "batchpilot.invalid"
    return f"<{digest}.batchpilot@{domain}>"


def build_email(
    message: Message, *, sender: str, recipients: tuple[str, ...], date: datetime
) -> EmailMessage:
    """The MIME email (multipart/alternative: text, then HTML) ready for SMTP."""
    rendered = render_email(message)
    email = EmailMessage()
    email["Subject"] = rendered.subject
    email["From"] = formataddr(("batchpilot", sender))
    email["To"] = ", ".join(recipients)
    email["Date"] = format_datetime(date)
    email["Message-ID"] = message_id_for(message, sender)
    email["X-Batchpilot-Idempotency-Key"] = message.idempotency_key
    email.set_content(rendered.text)
    email.add_alternative(rendered.html, subtype="html")
    return email
