"""Which database server sessions (PostgreSQL backends) each attempt opened.

A ``kill -9`` of a run's process closes its sockets, but a statement already
running on the server goes on until it ends (a ``pg_sleep(60)`` for a minute, a
long ``UPDATE`` holding its locks). Recording each attempt's backend lets
``cancel``, ``runs reap`` and ``resume`` stop exactly those sessions later.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select

from batchpilot.store.records import utcnow
from batchpilot.store.tables import server_sessions


@dataclass(frozen=True)
class ServerSession:
    """One server session an attempt opened: a backend pid and the instant it started,
    which together name it uniquely on its server (a pid alone is reused)."""

    run_id: str
    task_id: str
    attempt: int
    connection: str
    backend_pid: int
    backend_start: str


class ServerSessionLedger:
    """The store's methods for server sessions (mixed into :class:`RunStore`)."""

    def record_server_session(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        *,
        connection: str,
        backend_pid: int,
        backend_start: str,
    ) -> None:
        """Remember that an attempt opened this server session (once; repeats are ignored)."""
        key = {
            "run_id": run_id,
            "task_id": task_id,
            "attempt": attempt,
            "connection": connection,
            "backend_pid": backend_pid,
        }
        with self._begin() as conn:  # type: ignore[attr-defined]
            exists = conn.execute(
                select(server_sessions.c.run_id).where(
                    *(server_sessions.c[name] == value for name, value in key.items())
                )
            ).first()
            if exists is None:
                conn.execute(
                    insert(server_sessions).values(
                        **key, backend_start=backend_start, recorded_at=utcnow()
                    )
                )

    def server_sessions(self, run_id: str) -> list[ServerSession]:
        """Every server session the run's attempts opened, oldest first."""
        query = (
            select(server_sessions)
            .where(server_sessions.c.run_id == run_id)
            .order_by(server_sessions.c.recorded_at)
        )
        with self._connect() as conn:  # type: ignore[attr-defined]
            return [
                ServerSession(
                    run_id=row["run_id"],
                    task_id=row["task_id"],
                    attempt=row["attempt"],
                    connection=row["connection"],
                    backend_pid=row["backend_pid"],
                    backend_start=row["backend_start"],
                )
                for row in conn.execute(query).mappings()
            ]
