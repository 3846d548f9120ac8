"""Backfills in the state store: each ``batchpilot backfill`` and the runs it created.

A backfill is keyed by its pipeline and its range (``range_key``: start, end and
step). Started again with the same range while it has not ended (it was
interrupted), it continues under the same id. Which slot already ran is the
slot claims' business (:mod:`batchpilot.store.schedules`); this module only
remembers the backfill's options, its status and its runs, so that ``backfill
cancel ID`` can find and stop them from another process.

Reached as ``BackfillStore(store.engine)``; every method is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    Select,
    String,
    Table,
    select,
    update,
)

from batchpilot.errors import StoreError
from batchpilot.states import RunStatus
from batchpilot.store.records import aware, utcnow
from batchpilot.store.run_rows import as_utc
from batchpilot.store.tables import metadata, runs
from batchpilot.store.transaction import Wrapped

backfills = Table(
    "bp_backfills",
    metadata,
    Column("backfill_id", String(100), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("range_key", String(400), nullable=False),
    Column("range_start", String(40), nullable=False),
    Column("range_end", String(40), nullable=False),
    Column("every", String(40)),
    Column("options", JSON, nullable=False),
    Column("slot_count", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

backfill_runs = Table(
    "bp_backfill_runs",
    metadata,
    Column("backfill_id", String(100), primary_key=True),
    Column("run_id", String(100), primary_key=True),
    Column("slot", DateTime(timezone=True), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
    #: stopped by its backfill's Ctrl-C/SIGTERM: the backfill continued resumes it
    Column("interrupted", Boolean, nullable=False, default=False),
)


class BackfillStatus(StrEnum):
    """A backfill's state: ``running`` until it ends (also while interrupted)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        """True once the backfill has ended."""
        return self is not BackfillStatus.RUNNING


class BackfillNotFound(StoreError):
    """No backfill has this id (or a unique prefix of it)."""

    def __init__(self, backfill_id: str) -> None:
        self.backfill_id = backfill_id
        super().__init__(
            f"no backfill '{backfill_id}' in the state store (see: batchpilot backfill list)"
        )


@dataclass(frozen=True)
class BackfillRecord:
    """A backfill as recorded: its range as given, its options and where it stands."""

    backfill_id: str
    pipeline: str
    range_start: str
    range_end: str
    every: str | None
    options: dict[str, Any]
    slot_count: int
    status: BackfillStatus
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class BackfillRun:
    """One run a backfill created (or resumed), with its slot and its current status."""

    run_id: str
    slot: datetime
    status: RunStatus


def range_key(range_start: str, range_end: str, every: str | None) -> str:
    """The identity of a backfill's range: the same arguments give the same key."""
    return f"{range_start}|{range_end}|{every or ''}"


def _unfinished(query: Select[Any], pipeline: str, key: str) -> Select[Any]:
    """``query`` narrowed to the pipeline's backfills of this range key that have not ended
    and were not asked to cancel, newest first."""
    return query.where(
        backfills.c.pipeline == pipeline,
        backfills.c.range_key == key,
        backfills.c.status == BackfillStatus.RUNNING.value,
        backfills.c.cancel_requested.is_(False),
    ).order_by(backfills.c.created_at.desc())


class BackfillStore:
    """Backfills and their runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find_unfinished(self, pipeline: str, key: str) -> BackfillRecord | None:
        """The newest backfill of this pipeline and range key that has not ended (it was
        interrupted, or still runs), unless it was asked to cancel."""
        with Wrapped(self.engine, begin=False) as conn:
            row = conn.execute(_unfinished(select(backfills), pipeline, key)).mappings().first()
        return None if row is None else _record(row)

    def start_or_continue(
        self,
        *,
        new_id: str,
        pipeline: str,
        range_start: str,
        range_end: str,
        every: str | None,
        options: dict[str, Any],
        slot_count: int,
    ) -> tuple[BackfillRecord, bool]:
        """The unfinished backfill of this pipeline and range (its options updated), or a
        new one named ``new_id``; the flag says whether it continues an earlier one."""
        key = range_key(range_start, range_end, every)
        now = utcnow()
        with Wrapped(self.engine, begin=True) as conn:
            found = conn.execute(
                _unfinished(select(backfills.c.backfill_id), pipeline, key)
            ).first()
            if found is not None:
                conn.execute(
                    update(backfills)
                    .where(backfills.c.backfill_id == found[0])
                    .values(options=options, slot_count=slot_count, updated_at=now)
                )
                backfill_id, continued = str(found[0]), True
            else:
                conn.execute(
                    backfills.insert().values(
                        backfill_id=new_id,
                        pipeline=pipeline,
                        range_key=key,
                        range_start=range_start,
                        range_end=range_end,
                        every=every,
                        options=options,
                        slot_count=slot_count,
                        status=BackfillStatus.RUNNING.value,
                        cancel_requested=False,
                        created_at=now,
                        updated_at=now,
                    )
                )
                backfill_id, continued = new_id, False
        return self.get(backfill_id), continued

    def get(self, backfill_id: str) -> BackfillRecord:
        """The backfill with this id or unique id prefix; raises :class:`BackfillNotFound`."""
        with Wrapped(self.engine, begin=False) as conn:
            rows = (
                conn.execute(
                    select(backfills).where(
                        backfills.c.backfill_id.startswith(backfill_id, autoescape=True)
                    )
                )
                .mappings()
                .all()
            )
        exact = [r for r in rows if r["backfill_id"] == backfill_id]
        if exact:
            return _record(exact[0])
        if len(rows) != 1 or not backfill_id:
            raise BackfillNotFound(backfill_id)
        return _record(rows[0])

    def list(self, *, limit: int = 20) -> list[BackfillRecord]:
        """The newest backfills first."""
        query = select(backfills).order_by(backfills.c.created_at.desc()).limit(limit)
        with Wrapped(self.engine, begin=False) as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def add_run(self, backfill_id: str, run_id: str, slot: datetime) -> None:
        """Remember that the backfill drives ``run_id`` (for its slot); once per run."""
        with Wrapped(self.engine, begin=True) as conn:
            known = conn.execute(
                select(backfill_runs.c.run_id).where(
                    backfill_runs.c.backfill_id == backfill_id, backfill_runs.c.run_id == run_id
                )
            ).first()
            if known is None:
                conn.execute(
                    backfill_runs.insert().values(
                        backfill_id=backfill_id,
                        run_id=run_id,
                        slot=as_utc(slot),
                        added_at=utcnow(),
                        interrupted=False,
                    )
                )

    def runs(self, backfill_id: str) -> list[BackfillRun]:
        """The backfill's runs, by slot, with their status (UNKNOWN once purged)."""
        query = (
            select(backfill_runs.c.run_id, backfill_runs.c.slot, runs.c.status)
            .select_from(backfill_runs.outerjoin(runs, runs.c.run_id == backfill_runs.c.run_id))
            .where(backfill_runs.c.backfill_id == backfill_id)
            .order_by(backfill_runs.c.slot, backfill_runs.c.added_at)
        )
        with Wrapped(self.engine, begin=False) as conn:
            return [
                BackfillRun(row["run_id"], aware(row["slot"]), _run_status(row["status"]))  # type: ignore[arg-type]
                for row in conn.execute(query).mappings()
            ]

    def mark_interrupted(self, backfill_id: str, run_ids: list[str]) -> None:
        """Remember that the backfill's own interruption stopped these runs."""
        if not run_ids:
            return
        with Wrapped(self.engine, begin=True) as conn:
            conn.execute(
                update(backfill_runs)
                .where(
                    backfill_runs.c.backfill_id == backfill_id,
                    backfill_runs.c.run_id.in_(run_ids),
                )
                .values(interrupted=True)
            )

    def interrupted_runs(self, backfill_id: str) -> set[str]:
        """The runs the backfill's own interruption stopped (see :meth:`mark_interrupted`)."""
        query = select(backfill_runs.c.run_id).where(
            backfill_runs.c.backfill_id == backfill_id, backfill_runs.c.interrupted.is_(True)
        )
        with Wrapped(self.engine, begin=False) as conn:
            return {str(row[0]) for row in conn.execute(query)}

    def request_cancel(self, backfill_id: str) -> None:
        """Ask the process driving the backfill to start nothing more."""
        self._update(backfill_id, cancel_requested=True)

    def set_status(self, backfill_id: str, status: BackfillStatus) -> None:
        """Record where the backfill stands (``running`` again when it is continued)."""
        self._update(backfill_id, status=status.value)

    def _update(self, backfill_id: str, **values: Any) -> None:
        with Wrapped(self.engine, begin=True) as conn:
            conn.execute(
                update(backfills)
                .where(backfills.c.backfill_id == backfill_id)
                .values(updated_at=utcnow(), **values)
            )


def _run_status(value: str | None) -> RunStatus:
    return RunStatus(value) if value in RunStatus._value2member_map_ else RunStatus.UNKNOWN


def _record(row: Any) -> BackfillRecord:
    return BackfillRecord(
        backfill_id=row["backfill_id"],
        pipeline=row["pipeline"],
        range_start=row["range_start"],
        range_end=row["range_end"],
        every=row["every"],
        options=dict(row["options"] or {}),
        slot_count=row["slot_count"],
        status=BackfillStatus(row["status"]),
        cancel_requested=bool(row["cancel_requested"]),
        created_at=aware(row["created_at"]),  # type: ignore[arg-type]
        updated_at=aware(row["updated_at"]),  # type: ignore[arg-type]
    )


__all__ = [
    "BackfillNotFound",
    "BackfillRecord",
    "BackfillRun",
    "BackfillStatus",
    "BackfillStore",
    "backfill_runs",
    "backfills",
    "range_key",
]
