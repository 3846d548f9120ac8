"""Read-only queries over runs for the dashboard and the monitor: a filtered page of runs
(keyset pagination on the ``created_at`` index), the runs of a time window, runs by id,
and the marks the pages' live updates compare. (The numbers of a window, the slow
rule's baselines among them, are :mod:`batchpilot.store.run_aggregates`'.)

Every filter value is a bound parameter; every query has a LIMIT and walks an index in
the page's order (migration 0011), so a store with 100,000 runs answers as fast as one
with a hundred. Runs come back as :class:`RunSummaryRecord` (no pipeline, no params).
Reached as ``RunStore.queries``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import Engine, Integer, Select, bindparam, select, tuple_

from batchpilot.errors import StoreError
from batchpilot.states import RunStatus
from batchpilot.store.records import RunSummaryRecord, run_summary_record
from batchpilot.store.run_rows import as_utc
from batchpilot.store.tables import runs
from batchpilot.store.transaction import Wrapped

#: What the lists read of a run: everything but the stored pipeline and params (JSON).
RUN_SUMMARY_COLUMNS = tuple(c for c in runs.c if c.name not in ("spec", "params", "source_path"))
#: The most runs one window query returns (a day with more is shown truncated).
MAX_WINDOW_RUNS = 10_000
_INSTANT = runs.c.created_at.type
#: run ids per ``IN (…)`` list, well under every backend's limit of bound parameters
_IDS_PER_QUERY = 500


class InvalidCursor(StoreError):
    """A page cursor that this store did not hand out (edited, or truncated)."""

    def __init__(self, cursor: str) -> None:
        self.cursor = cursor
        super().__init__(
            f"invalid page cursor {cursor[:40]!r}: use the 'next' link of the previous page"
        )


@dataclass(frozen=True)
class RunCursor:
    """Where the next page of runs (newest first) starts: after this run."""

    created_at: datetime
    run_id: str

    def encode(self) -> str:
        """The cursor as an opaque URL-safe string."""
        created = as_utc(self.created_at)
        assert created is not None
        raw = f"{created.isoformat()}|{self.run_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> RunCursor:
        """Parse what :meth:`encode` gave; raises :class:`InvalidCursor` for anything else."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            created, run_id = raw.split("|", 1)
            instant = datetime.fromisoformat(created)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidCursor(text) from None
        if instant.tzinfo is None or not run_id:
            raise InvalidCursor(text)
        return cls(instant, run_id)


@dataclass(frozen=True, slots=True)
class PastSuccess:
    """A successful run with only the times the "slow" rule reads."""

    run_id: str
    pipeline: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True)
class RunFilter:
    """Which runs a page lists: all given conditions hold (``created_*`` aware instants,
    ``created_from`` included, ``created_until`` excluded)."""

    pipeline: str | None = None
    statuses: Sequence[RunStatus] = ()
    created_from: datetime | None = None
    created_until: datetime | None = None


@dataclass(frozen=True)
class RunPage:
    """One page of runs, newest first, and the cursor of the next page (None: the last)."""

    runs: list[RunSummaryRecord]
    next_cursor: RunCursor | None


class RunQueries:
    """The read-only run queries of the dashboard and the monitor (one connection each)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def page(self, where: RunFilter, *, after: RunCursor | None = None, limit: int = 50) -> RunPage:
        """Up to ``limit`` runs matching ``where``, newest first, after the cursor ``after``."""
        statement = _page_statement(
            bool(where.pipeline),
            bool(where.statuses),
            where.created_from is not None,
            where.created_until is not None,
            after is not None,
        )
        values: dict[str, object] = {"limit": limit + 1}
        if where.pipeline:
            values["pipeline"] = where.pipeline
        if where.statuses:
            values["statuses"] = [status.value for status in where.statuses]
        if where.created_from is not None:
            values["created_from"] = as_utc(where.created_from)
        if where.created_until is not None:
            values["created_until"] = as_utc(where.created_until)
        if after is not None:
            values["after_created"] = as_utc(after.created_at)
            values["after_run_id"] = after.run_id
        with Wrapped(self.engine, begin=False) as conn:
            rows = conn.execute(statement, values).mappings().all()
        found = [run_summary_record(r) for r in rows]
        more = len(found) > limit
        found = found[:limit]
        cursor = RunCursor(found[-1].created_at, found[-1].run_id) if more and found else None
        return RunPage(found, cursor)

    def created_between(
        self, start: datetime, end: datetime, *, limit: int = MAX_WINDOW_RUNS
    ) -> list[RunSummaryRecord]:
        """The runs created in ``[start, end)`` (aware instants), oldest first."""
        query = (
            select(*RUN_SUMMARY_COLUMNS)
            .where(*_conditions(RunFilter(created_from=start, created_until=end)))
            .order_by(runs.c.created_at, runs.c.run_id)
            .limit(limit)
        )
        with Wrapped(self.engine, begin=False) as conn:
            return [run_summary_record(r) for r in conn.execute(query).mappings().all()]

    def runs_by_id(self, run_ids: Sequence[str]) -> list[RunSummaryRecord]:
        """The runs of these ids that exist, oldest first."""
        ids = list(dict.fromkeys(run_ids))
        found: list[RunSummaryRecord] = []
        with Wrapped(self.engine, begin=False) as conn:
            for start in range(0, len(ids), _IDS_PER_QUERY):
                query = select(*RUN_SUMMARY_COLUMNS).where(
                    runs.c.run_id.in_(ids[start : start + _IDS_PER_QUERY])
                )
                found += [run_summary_record(r) for r in conn.execute(query).mappings().all()]
        return sorted(found, key=lambda run: (run.created_at, run.run_id))

    def recent_marks(self, *, limit: int = 200) -> list[tuple[str, str, datetime | None]]:
        """``(run_id, status, ended_at)`` of the newest ``limit`` runs and of every queued or
        running one: what changes when a run starts, moves on or ends (the pages' live
        updates compare two of these)."""
        columns = (runs.c.run_id, runs.c.status, runs.c.ended_at)
        newest = select(*columns).order_by(runs.c.created_at.desc()).limit(limit)
        active = (
            select(*columns)
            .where(runs.c.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]))
            .order_by(runs.c.created_at.desc())
            .limit(limit)
        )
        with Wrapped(self.engine, begin=False) as conn:
            found = {tuple(r) for r in conn.execute(newest)}
            found |= {tuple(r) for r in conn.execute(active)}
        return sorted(found)  # type: ignore[arg-type]


@cache
def _page_statement(
    pipeline: bool, statuses: bool, created_from: bool, created_until: bool, after: bool
) -> Select:  # type: ignore[type-arg]
    """The page query for one shape of filter, every value a bound parameter: built once
    per shape, so a request neither rebuilds it nor recomputes its cache key (together
    about a millisecond of CPU, as much as reading the page itself)."""
    conditions = []
    if pipeline:
        conditions.append(runs.c.pipeline == bindparam("pipeline"))
    if statuses:
        conditions.append(runs.c.status.in_(bindparam("statuses", expanding=True)))
    if created_from:
        conditions.append(runs.c.created_at >= bindparam("created_from", type_=_INSTANT))
    if created_until:
        conditions.append(runs.c.created_at < bindparam("created_until", type_=_INSTANT))
    if after:  # the row value of :func:`_before`
        conditions.append(
            tuple_(runs.c.created_at, runs.c.run_id)
            < tuple_(
                bindparam("after_created", type_=_INSTANT),
                bindparam("after_run_id", type_=runs.c.run_id.type),
            )
        )
    return (
        select(*RUN_SUMMARY_COLUMNS)
        .where(*conditions)
        .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        .limit(bindparam("limit", type_=Integer))
    )


def _before(cursor: RunCursor) -> list:  # type: ignore[type-arg]
    """Runs after ``cursor`` in the newest-first order: created earlier, or at the same
    instant with a smaller id. Written as one row-value comparison, which PostgreSQL and
    SQLite both read as a range of the ``(…, created_at, run_id)`` indexes (the same
    condition spelled with OR made PostgreSQL scan from the newest run: a page halfway
    down a million runs took 0.9 s)."""
    created = as_utc(cursor.created_at)
    return [tuple_(runs.c.created_at, runs.c.run_id) < tuple_(created, cursor.run_id)]


def _conditions(where: RunFilter) -> list:  # type: ignore[type-arg]
    conditions = []
    if where.pipeline:
        conditions.append(runs.c.pipeline == where.pipeline)
    if where.statuses:
        conditions.append(runs.c.status.in_([status.value for status in where.statuses]))
    if where.created_from is not None:
        conditions.append(runs.c.created_at >= as_utc(where.created_from))
    if where.created_until is not None:
        conditions.append(runs.c.created_at < as_utc(where.created_until))
    return conditions


__all__ = [
    "RUN_SUMMARY_COLUMNS",
    "InvalidCursor",
    "PastSuccess",
    "RunCursor",
    "RunFilter",
    "RunPage",
    "RunQueries",
]
