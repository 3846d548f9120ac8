"""Schema migrations (Alembic), safe when two processes open a new store at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, text

_MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest Alembic revision; a test checks it matches the migrations folder.
SCHEMA_REVISION = "0013"


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


def upgrade(conn: Any) -> None:
    """Run Alembic on ``conn`` unless another process just did it (the lock is held)."""
    if current_revision(conn) == SCHEMA_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def current_revision(conn: Any) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (a no-op when it is current).

    Two processes opening a new store at once must not both create its
    tables: SQLite migrates under a file lock next to the database,
    PostgreSQL under a transaction-scoped advisory lock.
    """
    with engine.connect() as conn:
        if current_revision(conn) == SCHEMA_REVISION:
            return  # the common case, without a lock or Alembic (~0.3 s)
    if engine.dialect.name == "sqlite" and engine.url.database:
        lock = Path(engine.url.database + ".migrate.lock")
        with _file_lock(lock), engine.begin() as conn:
            upgrade(conn)
    else:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            upgrade(conn)
