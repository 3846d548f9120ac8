"""Runs a page at a time (the API's ``GET /executions``), and a finished run queued again.

A page is the newest runs matching the filters, ordered by ``(created_at,
run_id)`` descending; the next page starts strictly after the last row's pair
(keyset pagination), so a page costs the same at the millionth run as at the
first, and runs created meanwhile never shift a page. Filter values are bound
parameters (SQLAlchemy Core), never text in the statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update

from batchpilot.states import RunStatus, TaskState
from batchpilot.store.records import RunRecord, run_record
from batchpilot.store.tables import runs, task_instances


@dataclass(frozen=True)
class RunPageKey:
    """Where a page ends: the last row's ``created_at`` and ``run_id``."""

    created_at: datetime
    run_id: str


@dataclass(frozen=True)
class RunFilter:
    """Which runs a page holds: all given conditions at once (``None``: any)."""

    pipeline: str | None = None
    statuses: Sequence[RunStatus] = ()
    since: datetime | None = None
    until: datetime | None = None


class RunPages:
    """The store's paged run listing and re-queueing (mixed into :class:`RunStore`)."""

    def page_runs(
        self, where: RunFilter, *, limit: int, after: RunPageKey | None = None
    ) -> tuple[list[RunRecord], RunPageKey | None]:
        """Up to ``limit`` runs matching ``where``, newest first, after ``after``; and the key
        of the next page (``None`` when this is the last)."""
        conditions: list[Any] = []
        if where.pipeline is not None:
            conditions.append(runs.c.pipeline == where.pipeline)
        if where.statuses:
            conditions.append(runs.c.status.in_([s.value for s in where.statuses]))
        if where.since is not None:
            conditions.append(runs.c.created_at >= where.since)
        if where.until is not None:
            conditions.append(runs.c.created_at < where.until)
        if after is not None:
            conditions.append(
                or_(
                    runs.c.created_at < after.created_at,
                    and_(runs.c.created_at == after.created_at, runs.c.run_id < after.run_id),
                )
            )
        query = (
            select(runs)
            .where(*conditions)
            .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
            .limit(limit + 1)
        )
        with self._connect() as conn:  # type: ignore[attr-defined]
            rows = [run_record(r) for r in conn.execute(query).mappings()]
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], RunPageKey(last.created_at, last.run_id)

    def requeue_run(
        self, run_id: str, *, from_statuses: Sequence[RunStatus], pending_tasks: Sequence[str]
    ) -> bool:
        """Queue an unowned run again for ``serve``'s workers (a retry or resume asked over
        the API), its ``pending_tasks`` set pending and an old cancel request cleared, in one
        transaction. False (nothing changed) when the run left ``from_statuses`` or a process
        owns it meanwhile."""
        with self._begin() as conn:  # type: ignore[attr-defined]
            changed = conn.execute(
                update(runs)
                .where(
                    runs.c.run_id == run_id,
                    runs.c.owner.is_(None),
                    runs.c.status.in_([s.value for s in from_statuses]),
                )
                .values(status=RunStatus.QUEUED.value, error=None, cancel_requested=False)
            ).rowcount
            if changed != 1:
                return False
            if pending_tasks:
                conn.execute(
                    update(task_instances)
                    .where(
                        task_instances.c.run_id == run_id,
                        task_instances.c.task_id.in_(list(pending_tasks)),
                    )
                    .values(state=TaskState.PENDING.value, error=None)
                )
            return True


__all__ = ["RunFilter", "RunPageKey", "RunPages"]
