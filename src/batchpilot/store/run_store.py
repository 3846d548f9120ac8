"""The state store: with ``transaction``, ``migrate`` and ``records`` beside it, the
only code that talks to the state database.

Every method is one short transaction, so each state transition is durable
before the engine acts on it. SQLite (WAL) is the embedded default;
PostgreSQL serves several processes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.exc import SQLAlchemyError

from batchpilot.errors import RunNotFound, StoreError, first_line
from batchpilot.states import RunStatus, RunTrigger, TaskState
from batchpilot.store.alerts import AlertStore
from batchpilot.store.callback_queue import CallbackQueue
from batchpilot.store.migrate import migrate
from batchpilot.store.outbox import OutboxStore
from batchpilot.store.records import (
    ActiveRunRecord,
    AttemptRecord,
    RunRecord,
    TaskRecord,
    active_run_record,
    attempt_record,
    run_record,
    task_record,
    utcnow,
)
from batchpilot.store.requeue import RunRequeue
from batchpilot.store.retention import RetentionStore
from batchpilot.store.run_aggregates import RunAggregates
from batchpilot.store.run_history import RUN_BY_ID, TASKS_OF_RUN, RunHistory
from batchpilot.store.run_queries import RunQueries
from batchpilot.store.run_rows import NewRun, insert_run
from batchpilot.store.run_timings import RunHistoryStore
from batchpilot.store.schedules import ScheduleStore
from batchpilot.store.server_sessions import ServerSessionLedger
from batchpilot.store.tables import attempts, runs, select_full_runs, task_instances
from batchpilot.store.tokens import TokenStore
from batchpilot.store.transaction import (
    HotStatements,
    Transaction,
    Wrapped,
    status_values,
)
from batchpilot.store.triggers import TriggerStore


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a killed process (not a power cut) without an fsync per commit.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _psycopg_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class RunStore(
    ServerSessionLedger, OutboxStore, RunHistoryStore, RetentionStore, RunRequeue, CallbackQueue
):
    """Runs, task instances and attempts in a SQL database (SQLAlchemy Core)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = _psycopg_url(url)
        try:
            if self.url.startswith("sqlite"):
                self.engine: Engine = create_engine(self.url)
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(self.url, pool_pre_ping=True)
            if migrate:
                self.migrate()
            self._session: tuple[int, Any] | None = None
        except SQLAlchemyError as exc:
            reason = first_line(exc, driver=True)
            raise StoreError(f"cannot open the state store: {reason}") from exc

    @classmethod
    def for_home(
        cls, home: Path, database_url: str | None = None, *, migrate: bool = True
    ) -> RunStore:
        """The store of a batchpilot home: ``database_url`` or SQLite at ``home/state.db``.

        ``migrate=False`` skips the schema check, for a process whose parent opened (and so
        migrated) the same store already (``serve``'s workers).
        """
        if database_url:
            return cls(database_url, migrate=migrate)
        home.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{home / 'state.db'}", migrate=migrate)

    @cached_property
    def _hot(self) -> HotStatements:
        """The per-task statements, compiled at the first :meth:`write` (not at every open:
        a worker sets its run ``running`` before it needs them), for the dialect as the
        first connection configured it."""
        try:
            with self.engine.connect():
                pass  # the first connection initializes the dialect (server version, features)
            return HotStatements(self.engine.dialect)
        except SQLAlchemyError as exc:
            reason = first_line(exc, driver=True)
            raise StoreError(f"cannot open the state store: {reason}") from exc

    def migrate(self) -> None:
        """Bring the schema to the newest revision (see :func:`migrate.migrate`)."""
        migrate(self.engine)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    # -- runs -------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        pipeline: str,
        spec: dict[str, Any],
        params: dict[str, Any],
        ds: str,
        source_path: str | None,
        task_ids: Sequence[str],
        owner: str | None = None,
        executor: str = "local",
        external_id: str | None = None,
        slot: datetime | None = None,
        triggered_by: RunTrigger = RunTrigger.MANUAL,
    ) -> None:
        """Insert a run and all its task instances (pending), in one transaction.

        ``executor``/``external_id`` mark a run driven elsewhere (``airflow``
        and its DAG run id); ``slot`` (aware) and ``triggered_by`` record its
        logical time and what started it.
        """
        run = NewRun(
            run_id=run_id,
            pipeline=pipeline,
            spec=spec,
            params=params,
            ds=ds,
            source_path=source_path,
            task_ids=task_ids,
            owner=owner,
            executor=executor,
            external_id=external_id,
            slot=slot,
            triggered_by=triggered_by,
        )
        with self._begin() as conn:
            insert_run(conn, run)

    @cached_property
    def schedules(self) -> ScheduleStore:
        """Slot claims, schedule state and idempotency keys (see ``store/schedules.py``)."""
        return ScheduleStore(self.engine)

    @cached_property
    def triggers(self) -> TriggerStore:
        """Trigger fires and armed triggers (see ``store/triggers.py``)."""
        return TriggerStore(self.engine)

    @cached_property
    def queries(self) -> RunQueries:
        """Filtered pages of runs and time windows (see ``store/run_queries.py``)."""
        return RunQueries(self.engine)

    @cached_property
    def aggregates(self) -> RunAggregates:
        """Counts and duration baselines of a window of runs (see ``store/run_aggregates.py``)."""
        return RunAggregates(self.engine)

    @cached_property
    def alerts(self) -> AlertStore:
        """Alert episodes (see ``store/alerts.py``)."""
        return AlertStore(self.engine)

    @cached_property
    def history(self) -> RunHistory:
        """Recent successful runs, for baselines (see ``store/run_history.py``)."""
        return RunHistory(self.engine)

    @cached_property
    def tokens(self) -> TokenStore:
        """API tokens (see ``store/tokens.py``)."""
        return TokenStore(self.engine)

    def get_run(self, run_id: str) -> RunRecord:
        """Return a run; raises :class:`RunNotFound`."""
        with self._connect() as conn:
            row = conn.execute(RUN_BY_ID, {"run_id": run_id}).mappings().first()
            if row is None:
                matches = (
                    conn.execute(
                        select_full_runs()
                        .where(runs.c.run_id.startswith(run_id, autoescape=True))
                        .limit(2)
                    )
                    .mappings()
                    .all()
                )
                if len(matches) != 1:
                    raise RunNotFound(run_id)
                row = matches[0]
        return run_record(row)

    def list_runs(self, *, limit: int = 50, pipeline: str | None = None) -> list[RunRecord]:
        """The newest runs first."""
        query = (
            select_full_runs().order_by(runs.c.created_at.desc(), runs.c.run_id.desc()).limit(limit)
        )
        if pipeline:
            query = query.where(runs.c.pipeline == pipeline)
        with self._connect() as conn:
            return [run_record(r) for r in conn.execute(query).mappings()]

    def set_run_status(
        self,
        run_id: str,
        status: RunStatus,
        *,
        error: str | None = None,
        release: bool = False,
        needs_attention: bool | None = None,
    ) -> None:
        """Record a run's status; a terminal status also records its end time."""
        values = status_values(status, error, release)
        now = values.get("heartbeat_at") or utcnow()
        if needs_attention is not None:
            values["needs_attention"] = needs_attention
        with self._begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values))
            if status is RunStatus.RUNNING:
                conn.execute(
                    update(runs)
                    .where(runs.c.run_id == run_id, runs.c.started_at.is_(None))
                    .values(started_at=now)
                )

    def claim_run(
        self, run_id: str, owner: str, *, stale_after_s: float, dead_owners: Iterable[str] = ()
    ) -> bool:
        """Make ``owner`` the only process driving the run.

        Succeeds when nobody owns it, its owner's heartbeat is older than
        ``stale_after_s``, or its owner is known dead. One conditional UPDATE,
        so two processes racing for the same run cannot both win.
        """
        now = utcnow()
        stale_before = now - timedelta(seconds=stale_after_s)
        dead = list(dead_owners)
        condition = runs.c.owner.is_(None) | (runs.c.heartbeat_at < stale_before)
        if dead:
            condition = condition | runs.c.owner.in_(dead)
        with self._begin() as conn:
            result = conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id, condition)
                .values(owner=owner, heartbeat_at=now)
            )
            return result.rowcount == 1

    def heartbeat(self, run_id: str, owner: str) -> bool:
        """Refresh the owner's heartbeat; False if another process took the run over."""
        with self._begin() as conn:
            result = conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id, runs.c.owner == owner)
                .values(heartbeat_at=utcnow())
            )
            return result.rowcount == 1

    def release_run(self, run_id: str, owner: str) -> None:
        """Give up ownership of the run."""
        with self._begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id, runs.c.owner == owner)
                .values(owner=None)
            )

    def request_cancel(self, run_id: str) -> None:
        """Ask whoever drives the run to stop it (read by the engine's heartbeat)."""
        with self._begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(cancel_requested=True))

    def cancel_requested(self, run_id: str) -> bool:
        """Whether someone asked to cancel the run (what the engine's heartbeat polls: one
        column, not the whole run with its stored pipeline); False for an unknown run."""
        query = select(runs.c.cancel_requested).where(runs.c.run_id == run_id)
        with self._connect() as conn:
            return bool(conn.execute(query).scalar())

    def set_external_id(self, run_id: str, external_id: str) -> None:
        """Record the id a remote executor gave the run (an Airflow DAG run id)."""
        with self._begin() as conn:
            conn.execute(
                update(runs).where(runs.c.run_id == run_id).values(external_id=external_id)
            )

    # -- tasks ------------------------------------------------------------------------------

    def sync_task(
        self,
        run_id: str,
        task_id: str,
        *,
        state: TaskState,
        attempts: int | None = None,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        duration_s: float | None = None,
        error: str | None = None,
        rows_out: int | None = None,
    ) -> None:
        """Overwrite a task's state as a remote executor reports it (no attempt records)."""
        values: dict[str, Any] = {"state": state.value, "error": error}
        for name, value in (
            ("attempts", attempts),
            ("started_at", started_at),
            ("ended_at", ended_at),
            ("duration_s", duration_s),
            ("rows_out", rows_out),
        ):
            if value is not None:
                values[name] = value
        with self._begin() as conn:
            conn.execute(
                update(task_instances)
                .where(task_instances.c.run_id == run_id, task_instances.c.task_id == task_id)
                .values(**values)
            )

    def get_tasks(self, run_id: str) -> list[TaskRecord]:
        """The run's task instances in pipeline order."""
        with self._connect() as conn:
            rows = conn.execute(TASKS_OF_RUN, {"run_id": run_id}).mappings()
            return [task_record(r) for r in rows]

    def write(self) -> Transaction:
        """Open one transaction for several transitions (``with store.write() as tx: …``).

        The engine groups the transitions of one scheduling step this way, so a
        chain of tasks costs one commit per task.
        """
        session = self._session
        conn = session[1] if session and session[0] == threading.get_ident() else None
        return Transaction(self.engine, self._hot, conn)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep one connection open for this thread's :meth:`write` calls (the engine
        thread, for the length of a run); other threads use the pool as before."""
        conn = self.engine.connect()
        self._session = (threading.get_ident(), conn)
        try:
            yield
        finally:
            self._session = None
            conn.close()

    def start_attempt(
        self, run_id: str, task_id: str, attempt: int, *, log_path: str | None, kind: str = "run"
    ) -> datetime:
        """Mark the task running and open its attempt record; returns the start time."""
        with self.write() as tx:
            return tx.start_attempt(run_id, task_id, attempt, log_path=log_path, kind=kind)

    def finish_attempt(self, run_id: str, task_id: str, attempt: int, **values: Any) -> None:
        """Close an attempt and set the task state (see ``Transaction.finish_attempt``)."""
        with self.write() as tx:
            tx.finish_attempt(run_id, task_id, attempt, **values)

    def set_task_states(
        self, run_id: str, task_ids: Sequence[str], state: TaskState, *, error: str | None = None
    ) -> None:
        """Set several tasks to a state that needs no attempt (skipped, cancelled, pending)."""
        with self.write() as tx:
            tx.set_task_states(run_id, task_ids, state, error=error)

    def start_compensation_attempt(
        self, run_id: str, task_id: str, attempt: int, *, log_path: str
    ) -> None:
        """Open a compensation attempt record (the task's state is set by the caller)."""
        with self._begin() as conn:
            conn.execute(
                attempts.insert().values(
                    run_id=run_id,
                    task_id=task_id,
                    attempt=attempt,
                    kind="compensation",
                    state=TaskState.COMPENSATING.value,
                    started_at=utcnow(),
                    log_path=log_path,
                )
            )

    def finish_compensation_attempt(
        self, run_id: str, task_id: str, attempt: int, *, error: str | None
    ) -> None:
        """Close a compensation attempt as compensated, or failed with ``error``."""
        state = TaskState.COMPENSATED if error is None else TaskState.COMPENSATION_FAILED
        with self._begin() as conn:
            conn.execute(
                update(attempts)
                .where(
                    attempts.c.run_id == run_id,
                    attempts.c.task_id == task_id,
                    attempts.c.kind == "compensation",
                    attempts.c.attempt == attempt,
                )
                .values(state=state.value, ended_at=utcnow(), error=error)
            )

    def set_needs_attention(self, run_id: str, flag: bool) -> None:
        """Flag (or clear) a run that a person must look at (a failed compensation)."""
        with self._begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(needs_attention=flag))

    def close_open_attempts(self, run_id: str, *, error: str) -> list[tuple[str, int]]:
        """Mark attempts left open by a dead process as failed (see ``Transaction``)."""
        with self.write() as tx:
            return tx.close_open_attempts(run_id, error=error)

    def get_attempts(self, run_id: str, task_id: str | None = None) -> list[AttemptRecord]:
        """Attempts of a run (or of one task), oldest first."""
        query = select(attempts).where(attempts.c.run_id == run_id)
        if task_id is not None:
            query = query.where(attempts.c.task_id == task_id)
        query = query.order_by(attempts.c.started_at, attempts.c.task_id, attempts.c.attempt)
        with self._connect() as conn:
            return [attempt_record(r) for r in conn.execute(query).mappings()]

    def runs_in_status(self, statuses: Sequence[RunStatus]) -> list[RunRecord]:
        """Runs whose status is one of ``statuses``, oldest first."""
        query = (
            select_full_runs()
            .where(runs.c.status.in_([s.value for s in statuses]))
            .order_by(runs.c.created_at)
        )
        with self._connect() as conn:
            return [run_record(r) for r in conn.execute(query).mappings()]

    def active_runs(self) -> list[ActiveRunRecord]:
        """The queued and running runs, oldest first, as the few columns a scheduling pass
        reads (cheap to read every second, however large their pipelines)."""
        columns = [runs.c[name] for name in ActiveRunRecord.__dataclass_fields__]
        query = (
            select(*columns)
            .where(runs.c.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]))
            .order_by(runs.c.created_at)
        )
        with self._connect() as conn:
            return [active_run_record(r) for r in conn.execute(query).mappings()]

    # -- plumbing ---------------------------------------------------------------------------

    def _begin(self):  # type: ignore[no-untyped-def]
        return Wrapped(self.engine, begin=True)

    def _connect(self):  # type: ignore[no-untyped-def]
        return Wrapped(self.engine, begin=False)
