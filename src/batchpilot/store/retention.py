"""Deleting old runs' rows: which runs retention may take, and one transaction per run.

``RunStore`` inherits these methods. A run's rows are its ``bp_runs`` row (and
its pipeline in ``bp_run_specs``, part of the run: deleted with it by its foreign
key, counted with ``runs``) and every row keyed by its id that describes only that
run: task instances,
attempts, callbacks, server sessions and its idempotency key (the key's run is
gone, so the key is free again). Ledgers that must outlive their runs are kept
on purpose: slot claims (purging history must not make a slot due again),
trigger fires (a file still there must not fire again) and a backfill's list of
runs (it shows a purged run as ``unknown``).

A run is *eligible* when it ended (success, failed, cancelled) and does not
need attention; ``force`` makes every run eligible. Deletion re-checks
eligibility inside its transaction, so a run that was retried or flagged since
it was chosen is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, delete, func, select, true

from batchpilot.store.alerts import monitored_runs
from batchpilot.store.run_rows import as_utc
from batchpilot.store.run_timings import ENDED_STATUSES, TIMING_COLUMNS, RunTiming, timing_of
from batchpilot.store.tables import (
    attempts,
    callbacks,
    idempotency_keys,
    runs,
    server_sessions,
    task_instances,
)

#: the tables whose rows belong to one run, by the name counts are reported under;
#: a package that adds such a table (alerts of a run…) adds it here
RUN_ROW_TABLES: dict[str, Table] = {
    "tasks": task_instances,
    "attempts": attempts,
    "callbacks": callbacks,
    "server_sessions": server_sessions,
    "idempotency_keys": idempotency_keys,
    "monitored_runs": monitored_runs,
}


@dataclass(frozen=True)
class RowCounts:
    """How many rows of each kind a run has (or had): ``runs`` and :data:`RUN_ROW_TABLES`."""

    counts: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: RowCounts) -> RowCounts:
        names = dict.fromkeys([*self.counts, *other.counts])
        return RowCounts({n: self.counts.get(n, 0) + other.counts.get(n, 0) for n in names})

    def to_dict(self) -> dict[str, int]:
        """``{"runs": …, "tasks": …, …}`` with every kind named, zeros included."""
        return {n: self.counts.get(n, 0) for n in ("runs", *RUN_ROW_TABLES)}


def _eligible(force: bool, table: Any = runs) -> Any:
    if force:
        return true()
    return and_(table.c.status.in_(ENDED_STATUSES), table.c.needs_attention.is_(False))


class _Rollback(Exception):
    """Raised inside a deletion whose run is no longer eligible, to undo it."""


class RetentionStore:
    """Choosing old runs and deleting their rows."""

    def _begin(self) -> Any:  # provided by RunStore
        raise NotImplementedError

    def _connect(self) -> Any:  # provided by RunStore
        raise NotImplementedError

    def retention_candidates(
        self, *, ended_before: datetime, keep_last: int = 0, force: bool = False
    ) -> list[RunTiming]:
        """Eligible runs that ended before ``ended_before`` (a run that never ended: was
        created before it), oldest first, except each pipeline's ``keep_last`` most recent
        eligible runs (runs kept anyway, e.g. needing attention, do not use up the count)."""
        cutoff = as_utc(ended_before)
        age = func.coalesce(runs.c.ended_at, runs.c.created_at)
        query = select(*TIMING_COLUMNS).where(age < cutoff, _eligible(force))
        if keep_last > 0:
            # an alias of its own: the outer query's bp_runs must not correlate into it
            ranked = runs.alias("ranked")
            rank = (
                func.row_number()
                .over(
                    partition_by=ranked.c.pipeline,
                    order_by=(ranked.c.created_at.desc(), ranked.c.run_id.desc()),
                )
                .label("rank")
            )
            newest = select(ranked.c.run_id, rank).where(_eligible(force, ranked)).subquery()
            kept = select(newest.c.run_id).where(newest.c.rank <= keep_last)
            query = query.where(runs.c.run_id.not_in(kept))
        query = query.order_by(runs.c.created_at, runs.c.run_id)
        with self._connect() as conn:
            return [timing_of(r) for r in conn.execute(query).mappings()]

    def count_run_rows(self, run_id: str) -> RowCounts:
        """The rows :meth:`delete_run_rows` would delete for ``run_id`` now."""
        with self._connect() as conn:
            counts = {
                "runs": conn.execute(
                    select(func.count()).select_from(runs).where(runs.c.run_id == run_id)
                ).scalar_one()
            }
            for name, table in RUN_ROW_TABLES.items():
                counts[name] = conn.execute(
                    select(func.count()).select_from(table).where(table.c.run_id == run_id)
                ).scalar_one()
        return RowCounts(counts)

    def delete_run_rows(self, run_id: str, *, force: bool = False) -> RowCounts | None:
        """Delete a run's rows in one transaction; None (nothing deleted) when the run is
        gone or no longer eligible (retried, flagged as needing attention)."""
        still_eligible = select(runs.c.run_id).where(runs.c.run_id == run_id, _eligible(force))
        try:
            with self._begin() as conn:
                counts: dict[str, int] = {}
                for name, table in RUN_ROW_TABLES.items():
                    result = conn.execute(delete(table).where(table.c.run_id.in_(still_eligible)))
                    counts[name] = result.rowcount
                result = conn.execute(delete(runs).where(runs.c.run_id == run_id, _eligible(force)))
                if result.rowcount != 1:
                    raise _Rollback
                counts["runs"] = 1
        except _Rollback:
            return None
        return RowCounts(counts)


__all__ = ["RUN_ROW_TABLES", "RetentionStore", "RowCounts"]
