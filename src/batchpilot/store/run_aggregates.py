"""The numbers of a time window of runs, computed by the database: how many runs are in
each status, and each successful run's duration beside those of the successes before it.

The overview of a busy day (5,000 runs among a million) is read as a few dozen
numbers per status and four integers per successful run, never as run records: the
counting, the durations and the sliding baseline window are SQL (``GROUP BY``, window
functions), portable between SQLite and PostgreSQL. Durations are whole microseconds
(:class:`micros_between`), so a comparison with a baseline is exact on both backends.
Reached as ``RunStore.aggregates``; the rules that read these numbers are
:mod:`batchpilot.monitor.overview`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    FunctionElement,
    case,
    cast,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles

from batchpilot.states import RunStatus
from batchpilot.store.records import aware
from batchpilot.store.run_rows import as_utc
from batchpilot.store.tables import runs
from batchpilot.store.transaction import Wrapped

#: Pipelines of a window read as one index range each (SQLite allows 500 terms in a UNION).
MAX_RANGES = 400


class micros_between(FunctionElement[int]):
    """``micros_between(start, end)``: whole microseconds from ``start`` to ``end`` (NULL
    when either is NULL), compiled for each backend below."""

    type = BigInteger()
    inherit_cache = True
    name = "micros_between"


@compiles(micros_between, "postgresql")
def _micros_postgresql(element: micros_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    # EXTRACT of an interval is exact (numeric) on PostgreSQL 14 and later
    return f"CAST(EXTRACT(EPOCH FROM ({end}) - ({start})) * 1000000 AS BIGINT)"


@compiles(micros_between, "sqlite")
def _micros_sqlite(element: micros_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    # SQLAlchemy stores an instant as 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds from
    # strftime('%s'), microseconds from characters 21-26 (julianday's float would round)
    return (
        f"((CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', {start}) AS INTEGER))"
        f" * 1000000 + CAST(substr({end}, 21, 6) AS INTEGER)"
        f" - CAST(substr({start}, 21, 6) AS INTEGER))"
    )


@dataclass(frozen=True, slots=True)
class SuccessBaseline:
    """A successful run of the window: its duration, and the sum and count of the known
    durations of its pipeline's ``runs`` previous successes (its baseline's parts)."""

    run_id: str
    duration_us: int | None
    earlier_total_us: int
    earlier_count: int


class RunAggregates:
    """Counts and baselines of the runs created in a window ``[start, end)``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def status_counts(
        self, start: datetime, end: datetime, *, pipeline: str | None = None
    ) -> dict[RunStatus, int]:
        """How many runs (of ``pipeline``, when given) were created in the window, by
        status; statuses with no run are absent, unknown ones are counted as
        ``unknown``. Raises :class:`StoreError`."""
        query = (
            select(runs.c.status, func.count())
            .where(*_window(start, end, pipeline))
            .group_by(runs.c.status)
        )
        counts: dict[RunStatus, int] = {}
        with Wrapped(self.engine, begin=False) as conn:
            for value, count in conn.execute(query).all():
                status = RunStatus._value2member_map_.get(value, RunStatus.UNKNOWN)
                counts[status] = counts.get(status, 0) + count  # type: ignore[index]
        return counts

    def success_baselines(
        self, start: datetime, end: datetime, *, runs_before: int, pipeline: str | None = None
    ) -> list[SuccessBaseline]:
        """Each successful run created in the window (of ``pipeline``, when given), oldest
        first, with its duration and the durations of its pipeline's ``runs_before``
        successful runs created before it (before the window too).

        Reads the window's successes, plus for each of their pipelines the
        ``runs_before`` successes before the window (one index seek to find where they
        start, then a short range), and lets a window function slide over them: two
        statements.
        Raises :class:`StoreError`.
        """
        success = runs.c.status == RunStatus.SUCCESS.value
        duration = micros_between(runs.c.started_at, runs.c.ended_at)
        duration = case((duration < 0, 0), else_=duration)  # a clock step back: 0, not < 0
        in_window = select(
            runs.c.pipeline,
            runs.c.created_at,
            runs.c.run_id,
            duration.label("micros"),
            literal(1).label("in_window"),
        ).where(success, *_window(start, end, pipeline))
        since = self._baselines_since(start, end, runs_before=runs_before, pipeline=pipeline)
        if not since:
            return []
        # each pipeline's successes from its bound on. Bounds within a window's length
        # before the window share one range (every success there, a day's worth at
        # most); a pipeline that ran rarely gets an index range of its own. The bounds
        # are values: as a join, PostgreSQL scanned the whole history; as an OR of
        # ranges, SQLite did.
        columns = (
            runs.c.pipeline,
            runs.c.created_at,
            runs.c.run_id,
            duration.label("micros"),
            literal(0).label("in_window"),
        )
        before = [success, runs.c.created_at < as_utc(start)]
        horizon = start - (end - start)
        near = {name: first for name, first in since.items() if first and first >= horizon}
        far = {name: first for name, first in since.items() if name not in near}
        ranges = []
        if near:
            ranges.append(
                select(*columns).where(
                    *before,
                    runs.c.created_at >= as_utc(min(near.values())),
                    runs.c.pipeline.in_(sorted(near)),
                )
            )
        if len(far) <= MAX_RANGES:
            ranges += [
                select(*columns).where(
                    *before,
                    runs.c.pipeline == name,
                    *([runs.c.created_at >= as_utc(first)] if first is not None else []),
                )
                for name, first in far.items()
            ]
        else:  # one range from the earliest bound: the same rows and more, read longer
            known = [first for first in far.values() if first is not None]
            earliest = [runs.c.created_at >= as_utc(min(known))] if len(known) == len(far) else []
            ranges.append(select(*columns).where(*before, *earliest, runs.c.pipeline.in_(far)))
        both = union_all(in_window, *ranges).subquery("successes")
        slide = {
            "partition_by": both.c.pipeline,
            "order_by": (both.c.created_at, both.c.run_id),
            "rows": (-runs_before, -1),
        }
        slid = select(
            both.c.run_id,
            both.c.created_at,
            both.c.micros,
            both.c.in_window,
            # (PostgreSQL sums BIGINT as NUMERIC: read as Decimal, ten times slower)
            cast(func.sum(both.c.micros).over(**slide), BigInteger).label("total"),  # type: ignore[arg-type]
            func.count(both.c.micros).over(**slide).label("known"),  # type: ignore[arg-type]
        ).subquery("slid")
        query = (
            select(slid.c.run_id, slid.c.micros, slid.c.total, slid.c.known)
            .where(slid.c.in_window == 1)
            .order_by(slid.c.created_at, slid.c.run_id)
        )
        with Wrapped(self.engine, begin=False) as conn:
            rows = conn.execute(query).all()
        return [
            SuccessBaseline(run_id, None if micros is None else int(micros), int(total or 0), known)
            for run_id, micros, total, known in rows
        ]

    def _baselines_since(
        self, start: datetime, end: datetime, *, runs_before: int, pipeline: str | None
    ) -> dict[str, datetime | None]:
        """For each pipeline with a success in the window: when its ``runs_before``-th
        newest success before the window was created (None: it has fewer), found by one
        index seek per pipeline."""
        pipelines = (
            select(runs.c.pipeline)
            .where(runs.c.status == RunStatus.SUCCESS.value, *_window(start, end, pipeline))
            .distinct()
            .subquery("pipelines")
        )
        earlier = runs.alias("earlier")
        first = (
            select(earlier.c.created_at)
            .where(
                earlier.c.pipeline == pipelines.c.pipeline,
                earlier.c.status == RunStatus.SUCCESS.value,
                earlier.c.created_at < as_utc(start),
            )
            .order_by(earlier.c.created_at.desc(), earlier.c.run_id.desc())
            .limit(1)
            .offset(runs_before - 1)
            .scalar_subquery()
        )
        with Wrapped(self.engine, begin=False) as conn:
            rows = conn.execute(select(pipelines.c.pipeline, first)).all()
        return {name: aware(instant) for name, instant in rows}


def _window(start: datetime, end: datetime, pipeline: str | None) -> list:  # type: ignore[type-arg]
    conditions = [runs.c.created_at >= as_utc(start), runs.c.created_at < as_utc(end)]
    if pipeline is not None:
        conditions.append(runs.c.pipeline == pipeline)
    return conditions


__all__ = ["RunAggregates", "SuccessBaseline", "micros_between"]
