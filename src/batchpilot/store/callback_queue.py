"""A run's callbacks (``on_success``, ``on_failure``, ``on_retry``, the run's own hooks):
queued in the transaction of the transition that makes them due, then fired and marked
one by one, so a process that dies in between leaves them to fire on resume."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from batchpilot.states import RunStatus
from batchpilot.store.records import CallbackRecord, RunRecord, callback_record, run_record, utcnow
from batchpilot.store.tables import callbacks as callbacks_table
from batchpilot.store.tables import runs, select_full_runs


class CallbackQueue:
    """The store's methods for callbacks (mixed into :class:`RunStore`)."""

    def get_callbacks(
        self, run_id: str, *, states: Sequence[str] | None = None
    ) -> list[CallbackRecord]:
        """Callbacks of a run (optionally only those in ``states``), oldest first."""
        query = select(callbacks_table).where(callbacks_table.c.run_id == run_id)
        if states:
            query = query.where(callbacks_table.c.state.in_(list(states)))
        query = query.order_by(callbacks_table.c.created_at, callbacks_table.c.callback_id)
        with self._connect() as conn:  # type: ignore[attr-defined]
            return [callback_record(r) for r in conn.execute(query).mappings()]

    def mark_callback(
        self,
        run_id: str,
        callback_id: str,
        *,
        state: str,
        error: str | None = None,
        attempts: int | None = None,
    ) -> None:
        """Record a callback's progress: ``running`` before it fires, then ``done``/``failed``."""
        values: dict[str, Any] = {"state": state, "error": error}
        if attempts is not None:
            values["attempts"] = attempts
        if state in ("done", "failed"):
            values["fired_at"] = utcnow()
        with self._begin() as conn:  # type: ignore[attr-defined]
            conn.execute(
                update(callbacks_table)
                .where(
                    callbacks_table.c.run_id == run_id, callbacks_table.c.callback_id == callback_id
                )
                .values(**values)
            )

    def add_callbacks(self, run_id: str, callbacks: Sequence[CallbackRecord]) -> None:
        """Queue callbacks in their own transaction (see ``Transaction.add_callbacks``)."""
        with self.write() as tx:  # type: ignore[attr-defined]
            tx.add_callbacks(run_id, callbacks)

    def ended_runs_with_unfired_callbacks(self) -> list[RunRecord]:
        """Ended runs (success, failed, cancelled) with callbacks still pending or
        interrupted: their process died between the run's end and its callbacks."""
        unfired = (
            select(callbacks_table.c.run_id)
            .where(callbacks_table.c.state.in_(["pending", "running"]))
            .distinct()
        )
        ended = [RunStatus.SUCCESS.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value]
        query = (
            select_full_runs()
            .where(runs.c.status.in_(ended), runs.c.run_id.in_(unfired))
            .order_by(runs.c.created_at)
        )
        with self._connect() as conn:  # type: ignore[attr-defined]
            return [run_record(r) for r in conn.execute(query).mappings()]


__all__ = ["CallbackQueue"]
