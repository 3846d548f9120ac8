"""Stopping, on the database server, the sessions a dead run process left behind.

Only PostgreSQL keeps running a statement whose client is gone; SQLite lives in
the dead process itself. A session is ended only when both its backend pid and
its start instant match what the attempt recorded, so a pid the server has since
given to another client is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable

from batchpilot.connections import ConnectionRegistry
from batchpilot.errors import BatchpilotError
from batchpilot.store import ServerSession

#: seconds to wait for a server before giving up on ending its orphans
CONNECT_TIMEOUT_S = 10

_END_SESSION = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE pid = %s AND backend_start = %s::timestamptz AND pid <> pg_backend_pid()"
)


def end_orphaned_sessions(
    sessions: Iterable[ServerSession], connections: ConnectionRegistry
) -> list[ServerSession]:
    """End the recorded sessions that are still open on their servers; returns those ended.

    Call it only for a run whose process is dead. A connection that is unknown,
    not PostgreSQL or unreachable is passed over: its sessions, if any, end when
    their statement does.
    """
    by_connection: dict[str, list[ServerSession]] = {}
    for session in sessions:
        by_connection.setdefault(session.connection, []).append(session)
    ended: list[ServerSession] = []
    for name, group in by_connection.items():
        ended.extend(_end_on_server(name, group, connections))
    return ended


def _end_on_server(
    name: str, sessions: list[ServerSession], connections: ConnectionRegistry
) -> list[ServerSession]:
    if name not in connections:
        return []
    try:
        connection = connections.get(name)
        if not connection.is_postgres:
            return []
        dsn = connection.libpq_dsn()
    except BatchpilotError:
        return []
    import psycopg

    ended = []
    try:
        with psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="batchpilot-reaper",
        ) as conn:
            for session in sessions:
                row = conn.execute(
                    _END_SESSION, (session.backend_pid, session.backend_start)
                ).fetchone()
                if row is not None and row[0]:
                    ended.append(session)
    except psycopg.Error:
        return ended
    return ended
