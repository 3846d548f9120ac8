"""Alert episodes in the state store, and the mark of each run the monitor has evaluated.

An episode is one row of ``bp_alerts``: opened by an alert, resolved by the
first good run. A partial unique index keeps at most one open episode per
``episode_key`` (pipeline, rule, task), so two processes evaluating at once
never open two. The monitor decides (``batchpilot.monitor``); this module
persists its decision, the outbox messages included, in one transaction, and
marks the run evaluated in the same transaction so a run is evaluated once per
ending (a retried run that ends again is evaluated again). Reached as
``store.alerts``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from batchpilot.errors import AlertNotFound
from batchpilot.states import RunStatus
from batchpilot.store.outbox import insert_notification
from batchpilot.store.records import aware
from batchpilot.store.tables import metadata, missed_slots, runs
from batchpilot.store.transaction import Wrapped
from batchpilot.store.upserts import dialect_insert

alerts = Table(
    "bp_alerts",
    metadata,
    Column("alert_id", Integer, primary_key=True, autoincrement=True),
    Column("episode_key", String(64), nullable=False),
    Column("pipeline", String(200), nullable=False),
    Column("rule", String(30), nullable=False),
    Column("task", String(200)),
    Column("state", String(20), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("run_id", String(100)),
    Column("last_run_id", String(100)),
    Column("resolved_by_run_id", String(100)),
    Column("observed", Text, nullable=False),
    Column("baseline", Text, nullable=False),
    Column("threshold", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("occurrences", Integer, nullable=False),
    Column("reminders_sent", Integer, nullable=False),
    Column("last_notified_at", DateTime(timezone=True), nullable=False),
    Index(
        "uq_bp_alerts_open_episode",
        "episode_key",
        unique=True,
        sqlite_where=text("state = 'open'"),
        postgresql_where=text("state = 'open'"),
    ),
    Index("ix_bp_alerts_pipeline_state", "pipeline", "state"),
    Index("ix_bp_alerts_state", "state", "alert_id"),
)

monitored_runs = Table(
    "bp_monitored_runs",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("ended_at", DateTime(timezone=True)),
    Column("evaluated_at", DateTime(timezone=True), nullable=False),
)


class AlertState(StrEnum):
    """An episode is open until a good run resolves it."""

    OPEN = "open"
    RESOLVED = "resolved"

    def is_terminal(self) -> bool:
        """True once resolved."""
        return self is AlertState.RESOLVED


@dataclass(frozen=True)
class AlertRecord:
    """One alert episode as stored; ``observed``, ``baseline`` and ``threshold`` in words."""

    alert_id: int
    episode_key: str
    pipeline: str
    rule: str
    task: str | None
    state: AlertState
    severity: str
    opened_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    run_id: str | None
    last_run_id: str | None
    resolved_by_run_id: str | None
    observed: str
    baseline: str
    threshold: str
    message: str
    occurrences: int
    reminders_sent: int
    last_notified_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``alerts list --output json``, ``GET /alerts``)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "id": self.alert_id,
            "pipeline": self.pipeline,
            "rule": self.rule,
            "task": self.task,
            "state": self.state.value,
            "severity": self.severity,
            "opened_at": iso(self.opened_at),
            "resolved_at": iso(self.resolved_at),
            "acknowledged_at": iso(self.acknowledged_at),
            "run_id": self.run_id,
            "last_run_id": self.last_run_id,
            "resolved_by_run_id": self.resolved_by_run_id,
            "observed": self.observed,
            "baseline": self.baseline,
            "threshold": self.threshold,
            "message": self.message,
            "occurrences": self.occurrences,
            "reminders_sent": self.reminders_sent,
        }


@dataclass(frozen=True)
class NewAlert:
    """An episode to open."""

    episode_key: str
    pipeline: str
    rule: str
    task: str | None
    severity: str
    run_id: str | None
    observed: str
    baseline: str
    threshold: str
    message: str


@dataclass(frozen=True)
class OutgoingNotification:
    """One outbox message for one channel (``message`` is ``Message.to_dict()``)."""

    channel: str
    idempotency_key: str
    message: Mapping[str, Any]


@dataclass(frozen=True)
class EpisodePlan:
    """What one evaluation changes: episodes opened, seen again (the rule fired again while
    open), reminded, resolved, and the messages to queue."""

    opened: tuple[NewAlert, ...] = ()
    seen_again: tuple[int, ...] = ()
    reminded: tuple[int, ...] = ()
    resolved: tuple[int, ...] = ()
    notifications: tuple[OutgoingNotification, ...] = field(default=())


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _record(row: Mapping[str, Any]) -> AlertRecord:
    return AlertRecord(
        alert_id=row["alert_id"],
        episode_key=row["episode_key"],
        pipeline=row["pipeline"],
        rule=row["rule"],
        task=row["task"],
        state=AlertState(row["state"]),
        severity=row["severity"],
        opened_at=aware(row["opened_at"]),  # type: ignore[arg-type]
        resolved_at=aware(row["resolved_at"]),
        acknowledged_at=aware(row["acknowledged_at"]),
        run_id=row["run_id"],
        last_run_id=row["last_run_id"],
        resolved_by_run_id=row["resolved_by_run_id"],
        observed=row["observed"],
        baseline=row["baseline"],
        threshold=row["threshold"],
        message=row["message"],
        occurrences=row["occurrences"],
        reminders_sent=row["reminders_sent"],
        last_notified_at=aware(row["last_notified_at"]),  # type: ignore[arg-type]
    )


#: Decides an evaluation's plan from the pipeline's open episodes (called inside the
#: transaction that applies it).
Planner = Callable[[list[AlertRecord]], EpisodePlan]


class AlertStore:
    """Alert episodes: record an evaluation, list, acknowledge; each method one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_evaluation(
        self,
        *,
        run_id: str | None,
        ended_at: datetime | None,
        pipeline: str,
        planner: Planner,
        now: datetime,
    ) -> EpisodePlan | None:
        """Mark the run evaluated (for this ending), read the pipeline's open episodes, let
        ``planner`` decide, and apply its plan with its outbox messages, in one transaction.

        Returns None, changing nothing, when this ending of the run was evaluated already.
        ``run_id`` None: an evaluation no run ended (a deadline check), never marked.
        """
        now = _utc(now)
        with Wrapped(self.engine, begin=True) as conn:
            if run_id is not None and not _mark_evaluated(conn, run_id, ended_at, now):
                return None
            return _plan_and_apply(conn, pipeline, planner, run_id, now)

    def record_missed_slots_alert(
        self, record_id: int, *, pipeline: str, planner: Planner, now: datetime
    ) -> EpisodePlan | None:
        """Mark the "missed while down" record alerted, let ``planner`` decide from the
        pipeline's open episodes, and apply its plan, in one transaction. Returns None,
        changing nothing, when the record was alerted on already (once per record)."""
        now = _utc(now)
        mark = (
            update(missed_slots)
            .where(missed_slots.c.id == record_id, missed_slots.c.alerted_at.is_(None))
            .values(alerted_at=now)
        )
        with Wrapped(self.engine, begin=True) as conn:
            if conn.execute(mark).rowcount != 1:
                return None
            return _plan_and_apply(conn, pipeline, planner, None, now)

    def list(
        self, *, open_only: bool = False, pipeline: str | None = None, limit: int = 100
    ) -> list[AlertRecord]:
        """Episodes, newest first; only open ones with ``open_only``, of one ``pipeline``."""
        query = select(alerts).order_by(alerts.c.alert_id.desc()).limit(limit)
        if open_only:
            query = query.where(alerts.c.state == AlertState.OPEN.value)
        if pipeline is not None:
            query = query.where(alerts.c.pipeline == pipeline)
        with Wrapped(self.engine, begin=False) as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def get(self, alert_id: int) -> AlertRecord:
        """The episode with this id; raises :class:`AlertNotFound` when there is none."""
        with Wrapped(self.engine, begin=False) as conn:
            row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).mappings()
            found = row.first()
        if found is None:
            raise AlertNotFound(alert_id)
        return _record(found)

    def acknowledge(self, alert_id: int, *, now: datetime) -> AlertRecord:
        """Acknowledge an episode (no more reminders; again is harmless). Raises
        :class:`AlertNotFound` for an unknown id."""
        with Wrapped(self.engine, begin=True) as conn:
            conn.execute(
                update(alerts)
                .where(alerts.c.alert_id == alert_id, alerts.c.acknowledged_at.is_(None))
                .values(acknowledged_at=_utc(now))
            )
        return self.get(alert_id)

    def count_open(self) -> int:
        """How many episodes are open."""
        with Wrapped(self.engine, begin=False) as conn:
            rows = conn.execute(
                select(alerts.c.alert_id).where(alerts.c.state == AlertState.OPEN.value)
            )
            return len(rows.all())

    def open_counts(self) -> dict[tuple[str, str], int]:
        """Open episodes by (pipeline, rule): the ``batchpilot_open_alerts`` metric."""
        query = (
            select(alerts.c.pipeline, alerts.c.rule, func.count())
            .where(alerts.c.state == AlertState.OPEN.value)
            .group_by(alerts.c.pipeline, alerts.c.rule)
        )
        with Wrapped(self.engine, begin=False) as conn:
            return {(p, r): int(n) for p, r, n in conn.execute(query)}

    def unevaluated_ended_runs(self, *, since: datetime, limit: int = 100) -> list[str]:
        """Ids of runs that ended (success or failed) at or after ``since`` and whose ending
        the monitor has not evaluated, oldest first (the sweep ``serve`` runs)."""
        query = (
            select(runs.c.run_id)
            .select_from(runs.outerjoin(monitored_runs, monitored_runs.c.run_id == runs.c.run_id))
            .where(
                runs.c.ended_at >= _utc(since),
                runs.c.status.in_([RunStatus.SUCCESS.value, RunStatus.FAILED.value]),
                (monitored_runs.c.run_id.is_(None))
                | (monitored_runs.c.ended_at.is_(None))
                | (monitored_runs.c.ended_at != runs.c.ended_at),
            )
            .order_by(runs.c.ended_at)
            .limit(limit)
        )
        with Wrapped(self.engine, begin=False) as conn:
            return list(conn.execute(query).scalars())


# Built once: SQLAlchemy reuses their compiled form (the evaluation runs at every run's end).
_OPEN_OF_PIPELINE = (
    select(alerts)
    .where(alerts.c.pipeline == bindparam("pipeline"), alerts.c.state == AlertState.OPEN.value)
    .order_by(alerts.c.alert_id)
)


@functools.cache
def _mark_statement(dialect: str) -> Any:
    """Insert the run's mark, or move it to a new ending; returns a row only when it did
    (one statement: no row means this ending was evaluated already). Built once per dialect."""
    statement = dialect_insert(dialect, monitored_runs).values(
        run_id=bindparam("run_id"),
        ended_at=bindparam("ended_at"),
        evaluated_at=bindparam("now"),
    )
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[monitored_runs.c.run_id],
        set_={"ended_at": excluded.ended_at, "evaluated_at": excluded.evaluated_at},
        where=or_(
            monitored_runs.c.ended_at.is_(None),
            excluded.ended_at.is_(None),
            monitored_runs.c.ended_at != excluded.ended_at,
        ),
    ).returning(monitored_runs.c.run_id)


def _mark_evaluated(conn: Any, run_id: str, ended_at: datetime | None, now: datetime) -> bool:
    """Record that this ending of the run is evaluated; False when it was already."""
    ended = _utc(ended_at) if ended_at is not None else None
    params = {"run_id": run_id, "ended_at": ended, "now": now}
    return conn.execute(_mark_statement(conn.dialect.name), params).first() is not None


def _plan_and_apply(
    conn: Any, pipeline: str, planner: Planner, run_id: str | None, now: datetime
) -> EpisodePlan:
    """Read the pipeline's open episodes, plan, apply the plan and queue its messages."""
    open_rows = conn.execute(_OPEN_OF_PIPELINE, {"pipeline": pipeline}).mappings()
    plan = planner([_record(row) for row in open_rows])
    _apply(conn, plan, run_id, now)
    for note in plan.notifications:
        insert_notification(
            conn,
            channel=note.channel,
            idempotency_key=note.idempotency_key,
            message=note.message,
            now=now,
        )
    return plan


def _alert_update(**values: Any) -> Any:
    """An update of the open episodes among ``ids`` (an expanding bind), built once."""
    return (
        update(alerts)
        .where(
            alerts.c.alert_id.in_(bindparam("ids", expanding=True)),
            alerts.c.state == AlertState.OPEN.value,
        )
        .values(**values)
    )


_INSERT_ALERT = insert(alerts)
_RUN_ID = bindparam("by_run_id", type_=alerts.c.last_run_id.type)
_NOW = bindparam("at", type_=alerts.c.resolved_at.type)
_SEEN_AGAIN = _alert_update(occurrences=alerts.c.occurrences + 1, last_run_id=_RUN_ID)
_REMINDED = _alert_update(reminders_sent=alerts.c.reminders_sent + 1, last_notified_at=_NOW)
_RESOLVED = _alert_update(
    state=AlertState.RESOLVED.value, resolved_at=_NOW, resolved_by_run_id=_RUN_ID
)


def _apply(conn: Any, plan: EpisodePlan, run_id: str | None, now: datetime) -> None:
    if plan.opened:
        conn.execute(
            _INSERT_ALERT,
            [
                {
                    "episode_key": new.episode_key,
                    "pipeline": new.pipeline,
                    "rule": new.rule,
                    "task": new.task,
                    "state": AlertState.OPEN.value,
                    "severity": new.severity,
                    "opened_at": now,
                    "run_id": new.run_id,
                    "last_run_id": new.run_id,
                    "observed": new.observed,
                    "baseline": new.baseline,
                    "threshold": new.threshold,
                    "message": new.message,
                    "occurrences": 1,
                    "reminders_sent": 0,
                    "last_notified_at": now,
                    "resolved_at": None,
                    "acknowledged_at": None,
                    "resolved_by_run_id": None,
                }
                for new in plan.opened
            ],
        )
    if plan.seen_again:
        conn.execute(_SEEN_AGAIN, {"ids": list(plan.seen_again), "by_run_id": run_id})
    if plan.reminded:
        conn.execute(_REMINDED, {"ids": list(plan.reminded), "at": now})
    if plan.resolved:
        conn.execute(_RESOLVED, {"ids": list(plan.resolved), "at": now, "by_run_id": run_id})


__all__ = [
    "AlertRecord",
    "AlertState",
    "AlertStore",
    "EpisodePlan",
    "NewAlert",
    "OutgoingNotification",
    "Planner",
]
