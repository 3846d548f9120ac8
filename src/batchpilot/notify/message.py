"""What a notification says, independent of the channel that carries it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from batchpilot.errors import InvalidMessage

#: Longest idempotency key the outbox stores.
MAX_KEY_LENGTH = 300
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")


class Severity(StrEnum):
    """How urgent a message is; ``resolved`` announces that an alert is over."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Fact:
    """One labelled value of a message (``Observed``: ``41 min``)."""

    label: str
    value: str


@dataclass(frozen=True)
class Message:
    """One notification: a title, a short text for a person woken at 3 a.m., the key
    facts in order, a link, a severity, and the key that makes sending it idempotent.

    The same ``idempotency_key`` enqueued twice for one channel is one message;
    receivers see it as the ``Idempotency-Key`` header or in the email ``Message-ID``.
    Messages of one ``group`` (an alert episode: the alert, its reminders, its
    recovery) reach a channel in the order they were queued. ``extra`` is sent
    as is to generic webhooks (ids a receiving system may want).
    Raises :class:`InvalidMessage` when the title or the key is empty, the key
    is not printable ASCII, or the link is not an http(s) URL.
    """

    title: str
    summary: str
    idempotency_key: str
    severity: Severity = Severity.WARNING
    facts: tuple[Fact, ...] = ()
    link: str | None = None
    group: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise InvalidMessage("a notification needs a title")
        key = self.idempotency_key
        if not key.strip() or len(key) > MAX_KEY_LENGTH or not _PRINTABLE_ASCII.fullmatch(key):
            raise InvalidMessage(
                f"a notification needs an idempotency key of 1 to {MAX_KEY_LENGTH} printable "
                f"ASCII characters (it is sent as a header), got {key[:60]!r}"
            )
        if self.link is not None and not self.link.startswith(("http://", "https://")):
            raise InvalidMessage(f"a notification's link must be an http(s) URL, got {self.link!r}")
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "facts", tuple(self.facts))

    @property
    def subject(self) -> str:
        """The email subject: the severity in brackets, then the title."""
        return f"[{self.severity.value.upper()}] {self.title}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (stored in the outbox, sent by the generic webhook)."""
        return {
            "title": self.title,
            "summary": self.summary,
            "idempotency_key": self.idempotency_key,
            "severity": self.severity.value,
            "facts": [{"label": f.label, "value": f.value} for f in self.facts],
            "link": self.link,
            "group": self.group,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """The message :meth:`to_dict` wrote."""
        return cls(
            title=data["title"],
            summary=data.get("summary", ""),
            idempotency_key=data["idempotency_key"],
            severity=Severity(data.get("severity", Severity.WARNING.value)),
            facts=tuple(Fact(f["label"], f["value"]) for f in data.get("facts", ())),
            link=data.get("link"),
            group=data.get("group"),
            extra=data.get("extra") or {},
        )


def alert_facts(
    *,
    pipeline: str,
    run_id: str | None = None,
    rule: str | None = None,
    task: str | None = None,
    observed: str | None = None,
    baseline: str | None = None,
    threshold: str | None = None,
) -> tuple[Fact, ...]:
    """The key facts of an alert, in the order a person reads them (absent ones left out)."""
    pairs = (
        ("Pipeline", pipeline),
        ("Run", run_id),
        ("Rule", rule),
        ("Task", task),
        ("Observed", observed),
        ("Baseline", baseline),
        ("Threshold", threshold),
    )
    return tuple(Fact(label, value) for label, value in pairs if value is not None)
