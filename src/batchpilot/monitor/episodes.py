"""Alert episodes, decided purely: given the open episodes and a run's verdicts, what opens,
what is reminded, what resolves, and which messages go out.

An episode is keyed by (pipeline, rule, task). A verdict that fires opens one
(one alert) unless it is open already; while open, nothing is sent again except
a reminder when ``remind_every`` has passed since the last message and nobody
acknowledged it. A verdict that holds resolves the open episode with exactly
one recovery notice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from batchpilot.monitor.routing import channels_for
from batchpilot.monitor.rules import Verdict
from batchpilot.notify.message import Message, Severity, alert_facts
from batchpilot.store.alerts import AlertRecord, EpisodePlan, NewAlert, OutgoingNotification

_HEADLINES = {
    "failure": "run failed",
    "slow": "run slower than usual",
    "low_volume": "fewer rows than expected",
    "rejects": "too many rejected rows",
    "deadline": "not done by its deadline",
    "missed_schedule": "scheduled runs missed",
}


@dataclass(frozen=True)
class EpisodeContext:
    """What the planner needs besides the episodes and verdicts."""

    pipeline: str
    run_id: str | None
    now: datetime
    routes: Mapping[str, Sequence[str]] | None
    defined_channels: Container[str]
    remind_every_s: float | None = None
    #: what the alert is about when no run ended (a deadline's instant, ISO-8601)
    occasion: str | None = None


def episode_key(pipeline: str, rule: str, task: str | None) -> str:
    """The episode's identity: a SHA-256 (hex) of (pipeline, rule, task)."""
    raw = "\x1f".join((pipeline, rule, task or ""))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _headline(rule: str, task: str | None) -> str:
    words = _HEADLINES.get(rule, rule)
    return f"{words} (task {task})" if task else words


def alert_message(verdict: Verdict, ctx: EpisodeContext, key: str, *, reminder: int = 0) -> Message:
    """The alert (or its ``reminder``-th reminder) as a notification."""
    title = f"{ctx.pipeline}: {_headline(verdict.rule, verdict.task)}"
    if reminder:
        title = f"Reminder: {title}"
    run = f" Run {ctx.run_id}: batchpilot runs show {ctx.run_id}" if ctx.run_id else ""
    suffix = f"remind-{reminder}" if reminder else "alert"
    about = _short(ctx.occasion or ctx.run_id or ctx.now.isoformat())
    return Message(
        title=title,
        summary=f"{verdict.summary}{run}",
        idempotency_key=f"bp-alert-{key[:24]}-{about}-{suffix}",
        severity=verdict.severity,
        facts=alert_facts(
            pipeline=ctx.pipeline,
            run_id=ctx.run_id,
            rule=verdict.rule,
            task=verdict.task,
            observed=verdict.observed,
            baseline=verdict.baseline,
            threshold=verdict.threshold,
        ),
        group=key,
        extra={"pipeline": ctx.pipeline, "run_id": ctx.run_id, "rule": verdict.rule},
    )


def recovery_message(alert: AlertRecord, verdict: Verdict, ctx: EpisodeContext) -> Message:
    """The one notice that an episode is over."""
    since = alert.opened_at.strftime("%Y-%m-%d %H:%M UTC")
    return Message(
        title=f"Recovered: {ctx.pipeline}: {_headline(alert.rule, alert.task)}",
        summary=(
            f"Run {ctx.run_id} is good again ({verdict.observed}). The alert opened at "
            f"{since} by run {alert.run_id} is resolved after {alert.occurrences} bad "
            f"run{'s' if alert.occurrences != 1 else ''}."
        ),
        idempotency_key=(
            f"bp-alert-{alert.episode_key[:24]}-{_short(alert.run_id or since)}-recovered"
        ),
        severity=Severity.RESOLVED,
        facts=alert_facts(
            pipeline=ctx.pipeline,
            run_id=ctx.run_id,
            rule=alert.rule,
            task=alert.task,
            observed=verdict.observed,
            baseline=verdict.baseline,
            threshold=verdict.threshold,
        ),
        group=alert.episode_key,
        extra={"pipeline": ctx.pipeline, "run_id": ctx.run_id, "rule": alert.rule},
    )


def _notes(message: Message, channels: Sequence[str]) -> list[OutgoingNotification]:
    body = message.to_dict()
    return [OutgoingNotification(c, message.idempotency_key, body) for c in channels]


def plan_episodes(
    open_alerts: Sequence[AlertRecord], verdicts: Sequence[Verdict], ctx: EpisodeContext
) -> EpisodePlan:
    """Decide what the verdicts of one evaluation do to the pipeline's open episodes."""
    by_key = {alert.episode_key: alert for alert in open_alerts}
    opened: list[NewAlert] = []
    seen_again: list[int] = []
    reminded: list[int] = []
    resolved: list[int] = []
    notes: list[OutgoingNotification] = []
    for verdict in verdicts:
        key = episode_key(ctx.pipeline, verdict.rule, verdict.task)
        current = by_key.get(key)
        channels = channels_for(verdict.rule, ctx.routes, ctx.defined_channels)
        if verdict.fired and current is None:
            message = alert_message(verdict, ctx, key)
            opened.append(
                NewAlert(
                    episode_key=key,
                    pipeline=ctx.pipeline,
                    rule=verdict.rule,
                    task=verdict.task,
                    severity=verdict.severity.value,
                    run_id=ctx.run_id,
                    observed=verdict.observed,
                    baseline=verdict.baseline,
                    threshold=verdict.threshold,
                    message=f"{message.title}. {message.summary}",
                )
            )
            notes += _notes(message, channels)
            by_key[key] = None  # type: ignore[assignment]  # one alert per key per run
        elif verdict.fired and current is not None:
            seen_again.append(current.alert_id)
            if _reminder_due(current, ctx):
                reminded.append(current.alert_id)
                reminder = alert_message(verdict, ctx, key, reminder=current.reminders_sent + 1)
                notes += _notes(reminder, channels)
        elif not verdict.fired and current is not None:
            resolved.append(current.alert_id)
            recovery = channels_for(verdict.rule, ctx.routes, ctx.defined_channels, recovery=True)
            notes += _notes(recovery_message(current, verdict, ctx), recovery)
    return EpisodePlan(
        opened=tuple(opened),
        seen_again=tuple(seen_again),
        reminded=tuple(reminded),
        resolved=tuple(resolved),
        notifications=tuple(notes),
    )


def _reminder_due(alert: AlertRecord, ctx: EpisodeContext) -> bool:
    if ctx.remind_every_s is None or alert.acknowledged_at is not None:
        return False
    return ctx.now - alert.last_notified_at >= timedelta(seconds=ctx.remind_every_s)


__all__ = [
    "EpisodeContext",
    "alert_message",
    "episode_key",
    "plan_episodes",
    "recovery_message",
]
