"""The state store: the only module that talks to the state database.

Every method is one short transaction, so each state transition is durable
before the engine acts on it. SQLite (WAL) is the embedded default;
PostgreSQL serves several processes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, event, inspect, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from batchpilot.errors import RunNotFound, StoreError
from batchpilot.states import RunStatus, TaskState
from batchpilot.store.records import AttemptRecord, CallbackRecord, RunRecord, TaskRecord
from batchpilot.store.tables import attempts, runs, task_instances
from batchpilot.store.tables import callbacks as callbacks_table

_MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest Alembic revision; a test checks it matches the migrations folder.
SCHEMA_REVISION = "0002"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


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


class RunStore:
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
            self._hot = _HotStatements(self.engine.dialect)
            self._session: tuple[int, Any] | None = None
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the state store: {_first_line(exc)}") from exc

    @classmethod
    def for_home(cls, home: Path, database_url: str | None = None) -> RunStore:
        """The store of a batchpilot home: ``database_url`` or SQLite at ``home/state.db``."""
        if database_url:
            return cls(database_url)
        home.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{home / 'state.db'}")

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (a no-op when it is current).

        Two processes opening a new store at once must not both create its
        tables: SQLite migrates under a file lock next to the database,
        PostgreSQL under a transaction-scoped advisory lock.
        """
        with self.engine.connect() as conn:
            if _current_revision(conn) == SCHEMA_REVISION:
                return  # the common case, without a lock or Alembic (~0.3 s)
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            lock = Path(self.engine.url.database + ".migrate.lock")
            with _file_lock(lock), self.engine.begin() as conn:
                _upgrade(conn)
        else:
            with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
                _upgrade(conn)

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
    ) -> None:
        """Insert a run and all its task instances (pending), in one transaction.

        ``executor``/``external_id`` mark a run driven elsewhere (``airflow``
        and its DAG run id).
        """
        now = utcnow()
        with self._begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run_id,
                    pipeline=pipeline,
                    status=RunStatus.QUEUED.value,
                    source_path=source_path,
                    spec=spec,
                    params=params,
                    ds=ds,
                    created_at=now,
                    owner=owner,
                    heartbeat_at=now if owner else None,
                    needs_attention=False,
                    executor=executor,
                    external_id=external_id,
                    cancel_requested=False,
                )
            )
            if task_ids:
                conn.execute(
                    task_instances.insert(),
                    [
                        {
                            "run_id": run_id,
                            "task_id": task_id,
                            "position": i,
                            "state": TaskState.PENDING.value,
                            "attempts": 0,
                        }
                        for i, task_id in enumerate(task_ids)
                    ],
                )

    def get_run(self, run_id: str) -> RunRecord:
        """Return a run; raises :class:`RunNotFound`."""
        with self._connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
            if row is None:
                matches = (
                    conn.execute(
                        select(runs)
                        .where(runs.c.run_id.startswith(run_id, autoescape=True))
                        .limit(2)
                    )
                    .mappings()
                    .all()
                )
                if len(matches) != 1:
                    raise RunNotFound(run_id)
                row = matches[0]
        return _run_record(row)

    def list_runs(self, *, limit: int = 50, pipeline: str | None = None) -> list[RunRecord]:
        """The newest runs first."""
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.run_id.desc()).limit(limit)
        if pipeline:
            query = query.where(runs.c.pipeline == pipeline)
        with self._connect() as conn:
            return [_run_record(r) for r in conn.execute(query).mappings()]

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
        values = _status_values(status, error, release)
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
        query = (
            select(task_instances)
            .where(task_instances.c.run_id == run_id)
            .order_by(task_instances.c.position)
        )
        with self._connect() as conn:
            return [_task_record(r) for r in conn.execute(query).mappings()]

    def write(self) -> _Transaction:
        """Open one transaction for several transitions (``with store.write() as tx: …``).

        The engine groups the transitions of one scheduling step this way, so a
        chain of tasks costs one commit per task.
        """
        session = self._session
        conn = session[1] if session and session[0] == threading.get_ident() else None
        return _Transaction(self.engine, self._hot, conn)

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
        self, run_id: str, task_id: str, attempt: int, *, log_path: str, kind: str = "run"
    ) -> datetime:
        """Mark the task running and open its attempt record; returns the start time."""
        with self.write() as tx:
            return tx.start_attempt(run_id, task_id, attempt, log_path=log_path, kind=kind)

    def finish_attempt(self, run_id: str, task_id: str, attempt: int, **values: Any) -> None:
        """Close an attempt and set the task state (see ``_Transaction.finish_attempt``)."""
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
        """Mark attempts left open by a dead process as failed (see ``_Transaction``)."""
        with self.write() as tx:
            return tx.close_open_attempts(run_id, error=error)

    def get_attempts(self, run_id: str, task_id: str | None = None) -> list[AttemptRecord]:
        """Attempts of a run (or of one task), oldest first."""
        query = select(attempts).where(attempts.c.run_id == run_id)
        if task_id is not None:
            query = query.where(attempts.c.task_id == task_id)
        query = query.order_by(attempts.c.started_at, attempts.c.task_id, attempts.c.attempt)
        with self._connect() as conn:
            return [_attempt_record(r) for r in conn.execute(query).mappings()]

    # -- callbacks --------------------------------------------------------------------------

    def get_callbacks(
        self, run_id: str, *, states: Sequence[str] | None = None
    ) -> list[CallbackRecord]:
        """Callbacks of a run (optionally only those in ``states``), oldest first."""
        query = select(callbacks_table).where(callbacks_table.c.run_id == run_id)
        if states:
            query = query.where(callbacks_table.c.state.in_(list(states)))
        query = query.order_by(callbacks_table.c.created_at, callbacks_table.c.callback_id)
        with self._connect() as conn:
            return [_callback_record(r) for r in conn.execute(query).mappings()]

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
        with self._begin() as conn:
            conn.execute(
                update(callbacks_table)
                .where(
                    callbacks_table.c.run_id == run_id, callbacks_table.c.callback_id == callback_id
                )
                .values(**values)
            )

    def add_callbacks(self, run_id: str, callbacks: Sequence[CallbackRecord]) -> None:
        """Queue callbacks in their own transaction (see ``_Transaction.add_callbacks``)."""
        with self.write() as tx:
            tx.add_callbacks(run_id, callbacks)

    def runs_in_status(self, statuses: Sequence[RunStatus]) -> list[RunRecord]:
        """Runs whose status is one of ``statuses``, oldest first."""
        query = (
            select(runs)
            .where(runs.c.status.in_([s.value for s in statuses]))
            .order_by(runs.c.created_at)
        )
        with self._connect() as conn:
            return [_run_record(r) for r in conn.execute(query).mappings()]

    # -- plumbing ---------------------------------------------------------------------------

    def _begin(self):  # type: ignore[no-untyped-def]
        return _Wrapped(self.engine, begin=True)

    def _connect(self):  # type: ignore[no-untyped-def]
        return _Wrapped(self.engine, begin=False)


_B = bindparam
_TASK_KEY = (task_instances.c.run_id == _B("k_run")) & (task_instances.c.task_id == _B("k_task"))
_ATTEMPT_KEY = (
    (attempts.c.run_id == _B("k_run"))
    & (attempts.c.task_id == _B("k_task"))
    & (attempts.c.kind == "run")
    & (attempts.c.attempt == _B("k_attempt"))
)
_START_TASK = (
    update(task_instances)
    .where(_TASK_KEY)
    .values(
        state=_B("state"), attempts=_B("attempts"), started_at=_B("now"), ended_at=None, error=None
    )
)
_INSERT_ATTEMPT = attempts.insert()
_FINISH_ATTEMPT = (
    update(attempts)
    .where(_ATTEMPT_KEY)
    .values(state=_B("state"), ended_at=_B("now"), error=_B("error"))
)
_FINISH_TASK = (
    update(task_instances)
    .where(_TASK_KEY)
    .values(
        state=_B("state"),
        ended_at=_B("now"),
        error=_B("error"),
        rows_in=_B("rows_in"),
        rows_out=_B("rows_out"),
        rows_rejected=_B("rows_rejected"),
        duration_s=_B("duration_s"),
        output=_B("output", type_=task_instances.c.output.type),
    )
)


class _DriverStatement:
    """A Core statement compiled once for the store's dialect and run through
    ``exec_driver_sql``. The engine's hot path (four statements per task) skips
    SQLAlchemy's per-execution compile-cache lookup and parameter machinery:
    measured 470 µs → about 200 µs per task on SQLite."""

    def __init__(self, statement: Any, dialect: Any, column_keys: list[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.sql = compiled.string
        self.order = compiled.positiontup  # None for named paramstyles (psycopg)
        # literal values in the statement, e.g. ended_at=None
        self.defaults = {n: b.value for n, b in compiled.binds.items() if not b.required}
        self.processors = {
            name: processor
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }

    def execute(self, conn: Any, params: dict[str, Any]) -> None:
        values = {**self.defaults, **params}
        for name, processor in self.processors.items():
            if name in values:
                values[name] = processor(values[name])
        if self.order is None:
            conn.exec_driver_sql(self.sql, values)
        else:
            conn.exec_driver_sql(self.sql, tuple(values[name] for name in self.order))


_ATTEMPT_COLUMNS = ["run_id", "task_id", "attempt", "kind", "state", "started_at", "log_path"]


class _HotStatements:
    """The engine's per-task statements, compiled for one dialect."""

    def __init__(self, dialect: Any) -> None:
        self.start_task = _DriverStatement(_START_TASK, dialect)
        self.insert_attempt = _DriverStatement(_INSERT_ATTEMPT, dialect, _ATTEMPT_COLUMNS)
        self.finish_attempt = _DriverStatement(_FINISH_ATTEMPT, dialect)
        self.finish_task = _DriverStatement(_FINISH_TASK, dialect)


class _Transaction:
    """Transitions written in one database transaction (see :meth:`RunStore.write`)."""

    def __init__(self, engine: Engine, hot: _HotStatements, conn: Any = None) -> None:
        self._wrapped = _Wrapped(engine, begin=True, conn=conn)
        self._hot = hot
        self._conn: Any = None

    def __enter__(self) -> _Transaction:
        self._conn = self._wrapped.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):  # type: ignore[no-untyped-def]
        return self._wrapped.__exit__(exc_type, exc, tb)

    def start_attempt(
        self, run_id: str, task_id: str, attempt: int, *, log_path: str, kind: str = "run"
    ) -> datetime:
        """Mark the task running and open its attempt record; returns the start time."""
        now = utcnow()
        self._hot.start_task.execute(
            self._conn,
            {
                "k_run": run_id,
                "k_task": task_id,
                "state": TaskState.RUNNING.value,
                "attempts": attempt,
                "now": now,
            },
        )
        self._hot.insert_attempt.execute(
            self._conn,
            {
                "run_id": run_id,
                "task_id": task_id,
                "attempt": attempt,
                "kind": kind,
                "state": TaskState.RUNNING.value,
                "started_at": now,
                "log_path": log_path,
            },
        )
        return now

    def finish_attempt(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        *,
        state: TaskState,
        attempt_state: TaskState | None = None,
        error: str | None = None,
        rows_in: int | None = None,
        rows_out: int | None = None,
        rows_rejected: int | None = None,
        duration_s: float | None = None,
        output: dict[str, Any] | None = None,
    ) -> None:
        """Close an attempt and set the task's new state (success, failed or retry)."""
        now = utcnow()
        self._hot.finish_attempt.execute(
            self._conn,
            {
                "k_run": run_id,
                "k_task": task_id,
                "k_attempt": attempt,
                "state": (attempt_state or state).value,
                "now": now,
                "error": error,
            },
        )
        self._hot.finish_task.execute(
            self._conn,
            {
                "k_run": run_id,
                "k_task": task_id,
                "state": state.value,
                "now": now,
                "error": error,
                "rows_in": rows_in,
                "rows_out": rows_out,
                "rows_rejected": rows_rejected,
                "duration_s": duration_s,
                "output": output,
            },
        )

    def add_callbacks(self, run_id: str, callbacks: Sequence[CallbackRecord]) -> None:
        """Queue callbacks; one already queued under the same id is left as it is."""
        if not callbacks:
            return
        existing = set(
            self._conn.execute(
                select(callbacks_table.c.callback_id).where(
                    callbacks_table.c.run_id == run_id,
                    callbacks_table.c.callback_id.in_([c.callback_id for c in callbacks]),
                )
            ).scalars()
        )
        rows = [
            {
                "run_id": run_id,
                "callback_id": c.callback_id,
                "task_id": c.task_id,
                "event": c.event,
                "state": "pending",
                "attempts": 0,
                "context": c.context,
                "created_at": utcnow(),
            }
            for c in callbacks
            if c.callback_id not in existing
        ]
        if rows:
            self._conn.execute(callbacks_table.insert(), rows)

    def close_open_attempts(self, run_id: str, *, error: str) -> list[tuple[str, int]]:
        """Mark attempts left open by a dead process as failed.

        Returns the (task, attempt) of the task attempts closed (compensation
        attempts are closed too but not returned).
        """
        open_states = [TaskState.RUNNING.value, TaskState.COMPENSATING.value]
        open_rows = self._conn.execute(
            select(attempts.c.task_id, attempts.c.attempt, attempts.c.kind).where(
                attempts.c.run_id == run_id, attempts.c.state.in_(open_states)
            )
        ).all()
        if open_rows:
            self._conn.execute(
                update(attempts)
                .where(attempts.c.run_id == run_id, attempts.c.state.in_(open_states))
                .values(state=TaskState.FAILED.value, ended_at=utcnow(), error=error)
            )
        return [(r.task_id, r.attempt) for r in open_rows if r.kind == "run"]

    def set_run_status(
        self, run_id: str, status: RunStatus, *, error: str | None = None, release: bool = False
    ) -> None:
        """Record a run's status inside this transaction (see ``RunStore.set_run_status``)."""
        self._conn.execute(
            update(runs)
            .where(runs.c.run_id == run_id)
            .values(**_status_values(status, error, release))
        )

    def set_task_states(
        self, run_id: str, task_ids: Sequence[str], state: TaskState, *, error: str | None = None
    ) -> None:
        """Set several tasks to a state that needs no attempt (skipped, cancelled, pending)."""
        if not task_ids:
            return
        values: dict[str, Any] = {"state": state.value, "error": error}
        if state.is_terminal():
            values["ended_at"] = utcnow()
        self._conn.execute(
            update(task_instances)
            .where(task_instances.c.run_id == run_id, task_instances.c.task_id.in_(task_ids))
            .values(**values)
        )


class _Wrapped:
    """A connection context that turns driver errors into :class:`StoreError`."""

    def __init__(self, engine: Engine, *, begin: bool, conn: Any = None) -> None:
        self._engine = engine
        self._begin = begin
        self._conn = conn
        self._ctx: Any = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        try:
            if self._conn is not None:  # the engine thread's own connection, kept open
                self._ctx = self._conn.begin()
                self._ctx.__enter__()
                return self._conn
            self._ctx = self._engine.begin() if self._begin else self._engine.connect()
            return self._ctx.__enter__()
        except SQLAlchemyError as exc:
            raise StoreError(f"state store unavailable: {_first_line(exc)}") from exc

    def __exit__(self, exc_type, exc, tb):  # type: ignore[no-untyped-def]
        try:
            self._ctx.__exit__(exc_type, exc, tb)  # commits, or rolls back on error
        except SQLAlchemyError as err:
            raise StoreError(f"state store write failed: {_first_line(err)}") from err
        if isinstance(exc, SQLAlchemyError):
            raise StoreError(f"state store error: {_first_line(exc)}") from exc
        return False


def _status_values(status: RunStatus, error: str | None, release: bool) -> dict[str, Any]:
    values: dict[str, Any] = {"status": status.value, "error": error}
    now = utcnow()
    if status is RunStatus.RUNNING:
        values["ended_at"] = None
        values["heartbeat_at"] = now
    if status.is_terminal():
        values["ended_at"] = now
    if release:
        values["owner"] = None
    return values


_LOCK_KEY = 0x62617463  # "batc": the advisory lock batchpilot migrations take


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _upgrade(conn: Any) -> None:
    """Run Alembic on ``conn`` unless another process just did it (the lock is held)."""
    if _current_revision(conn) == SCHEMA_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _current_revision(conn: Any) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _run_record(row: Any) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        pipeline=row["pipeline"],
        status=RunStatus(row["status"])
        if row["status"] in RunStatus._value2member_map_
        else RunStatus.UNKNOWN,
        source_path=row["source_path"],
        spec=row["spec"],
        params=row["params"],
        ds=row["ds"],
        created_at=_aware(row["created_at"]),  # type: ignore[arg-type]
        started_at=_aware(row["started_at"]),
        ended_at=_aware(row["ended_at"]),
        owner=row["owner"],
        heartbeat_at=_aware(row["heartbeat_at"]),
        error=row["error"],
        needs_attention=bool(row["needs_attention"]),
        executor=row["executor"],
        external_id=row["external_id"],
        cancel_requested=bool(row["cancel_requested"]),
    )


def _state(value: str) -> TaskState:
    return TaskState(value) if value in TaskState._value2member_map_ else TaskState.UNKNOWN


def _task_record(row: Any) -> TaskRecord:
    return TaskRecord(
        run_id=row["run_id"],
        task_id=row["task_id"],
        position=row["position"],
        state=_state(row["state"]),
        attempts=row["attempts"],
        rows_in=row["rows_in"],
        rows_out=row["rows_out"],
        rows_rejected=row["rows_rejected"],
        started_at=_aware(row["started_at"]),
        ended_at=_aware(row["ended_at"]),
        duration_s=row["duration_s"],
        error=row["error"],
        output=row["output"],
    )


def _attempt_record(row: Any) -> AttemptRecord:
    return AttemptRecord(
        run_id=row["run_id"],
        task_id=row["task_id"],
        attempt=row["attempt"],
        kind=row["kind"],
        state=_state(row["state"]),
        started_at=_aware(row["started_at"]),  # type: ignore[arg-type]
        ended_at=_aware(row["ended_at"]),
        error=row["error"],
        log_path=row["log_path"],
    )


def _callback_record(row: Any) -> CallbackRecord:
    return CallbackRecord(
        callback_id=row["callback_id"],
        task_id=row["task_id"],
        event=row["event"],
        context=row["context"],
        state=row["state"],
        attempts=row["attempts"],
        error=row["error"],
        fired_at=_aware(row["fired_at"]),
    )
