"""A finished run taken up again: queued for ``serve``'s workers (a retry or resume asked
over the API or the dashboard), or retried in this process. Runs a page at a time are
:mod:`batchpilot.store.run_queries`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update

from batchpilot.states import RunStatus, TaskState
from batchpilot.store.tables import runs, task_instances


class RunRequeue:
    """Queueing a finished run again (mixed into :class:`RunStore`)."""

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

    def drop_cancel_request(self, run_id: str) -> None:
        """Forget the cancel request a finished run ended with, so taking it up again (a
        retry in this process) does not stop it at the first heartbeat."""
        with self._begin() as conn:  # type: ignore[attr-defined]
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(cancel_requested=False))


__all__ = ["RunRequeue"]
