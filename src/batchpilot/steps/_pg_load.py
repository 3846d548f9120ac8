"""How ``load.postgres`` works: bulk-load the input into a PostgreSQL table with COPY, exactly once.

Everything happens in one transaction: the record of the load in
``batchpilot_loads``, the table's creation, the TRUNCATE of a replace, the
COPY and the upsert's merge. A failure, a cancel or a crash leaves the target
as it was; a load that did commit is never repeated by a retry or a resume.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
from psycopg import sql

from batchpilot.errors import PermanentStepError, StepError
from batchpilot.steps._database import (
    LOADS_TABLE,
    LoadConfig,
    TableName,
    cancel_on_stop,
    check_load_columns,
    connection_failure,
    driver_message,
    refuse_empty_replace,
)
from batchpilot.steps._pg_binary import BadValue, encoded_batches, wire_schema
from batchpilot.steps._pg_copy import csv_chunks, in_background, postgres_type
from batchpilot.steps.base import StepContext, StepResult

_CREATE_LEDGER = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {} ("
    " pipeline text NOT NULL, run_id text NOT NULL, task_id text NOT NULL,"
    " rows bigint NOT NULL DEFAULT 0, loaded_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (pipeline, run_id, task_id))"
).format(sql.Identifier(LOADS_TABLE))

#: memory the upsert's merge may use for its hash join (a per-transaction setting)
MERGE_WORK_MEM = "256MB"

# SQLSTATE classes that mean the data itself is wrong: retrying cannot help
_BAD_DATA_CLASSES = ("22", "23", "21")


def load(ctx: StepContext, config: LoadConfig) -> StepResult:
    """Run a ``load.postgres`` task (see :class:`~batchpilot.steps.load_postgres.PostgresLoad`)."""
    connection = ctx.connections.get(config.connection)
    schema, batches = ctx.input_batches()
    columns = list(schema.names)
    table = config.table_name
    started = time.monotonic()
    try:
        pg = psycopg.connect(connection.libpq_dsn(), application_name="batchpilot")
    except psycopg.OperationalError as exc:
        raise StepError(connection_failure(connection, ctx.connections, exc)) from exc
    cancel_on_stop(ctx, pg, connection)
    metadata: dict[str, object] = {"mode": config.mode, "table": str(table)}
    if config.key:
        metadata["key"] = list(config.key)
    try:
        with pg:
            ledger_started = time.monotonic()
            _ensure_ledger(pg)
            recorded = _claim_load(pg, ctx)
            ledger_seconds = time.monotonic() - ledger_started
            if recorded is not None:
                ctx.wait_for_start()
                pg.rollback()
                ctx.log.info(
                    "skipped: task %s of run %s already loaded %d rows into %s",
                    ctx.load_key,
                    ctx.run_id,
                    recorded,
                    table,
                )
                metadata.update(rows=recorded, already_loaded=True)
                rows_in = ctx.single_input().rows
                return StepResult(rows_in=rows_in, rows_out=recorded, metadata=metadata)
            existing = _table_columns(pg, table)
            check_load_columns(columns, None if existing is None else list(existing), config)
            if existing is None:
                _create_table(pg, table, schema, config.key)
                existing = _table_columns(pg, table) or {}
            target_types = [existing[c] for c in columns]
            target = _identifier(table)
            column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
            if config.mode == "replace":
                pg.execute(sql.SQL("TRUNCATE {}").format(target))
            copy_into = target
            if config.mode == "upsert":
                copy_into = sql.Identifier("_batchpilot_stage")
                pg.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP"
                    ).format(copy_into, target)
                )
            copy_started = time.monotonic()
            wire = wire_schema(schema, target_types)
            copy_format = "csv" if wire is None else "binary"
            metadata["copy_format"] = copy_format
            if wire is None:
                chunks = csv_chunks(batches)
            else:
                chunks = encoded_batches(batches, wire, target_types)
            rows = _copy(ctx, pg, copy_into, column_list, copy_format, chunks)
            refuse_empty_replace(config, rows, ctx.task_id)  # rolls the TRUNCATE back
            metadata["copy_seconds"] = round(time.monotonic() - copy_started, 3)
            if config.mode == "upsert":
                merge_started = time.monotonic()
                metadata["changed"] = _merge(pg, target, copy_into, columns, config.key)
                metadata["merge_seconds"] = round(time.monotonic() - merge_started, 3)
            ctx.wait_for_start()  # started early: commit only once the upstream succeeded
            ledger_started = time.monotonic()
            _record_rows(pg, ctx, rows)
            ledger_seconds += time.monotonic() - ledger_started
            # the exactly-once bookkeeping's own cost, reported by the load benchmark
            metadata["ledger_seconds"] = round(ledger_seconds, 4)
    except psycopg.Error as exc:
        raise _load_error(exc, config, ctx) from exc
    except BadValue as exc:
        raise PermanentStepError(
            ctx.connections.redact(f"load into {config.table} failed, nothing was loaded: {exc}")
        ) from exc
    finally:
        pg.close()
    elapsed = time.monotonic() - started
    ctx.log.info("%s: loaded %d rows into %s in %.1fs", config.mode, rows, table, elapsed)
    metadata.update(rows=rows, already_loaded=False)
    return StepResult(rows_in=ctx.single_input().rows, rows_out=rows, metadata=metadata)


def _identifier(table: TableName) -> sql.Identifier:
    return sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)


def _ensure_ledger(pg: psycopg.Connection) -> None:
    try:
        pg.execute(_CREATE_LEDGER)
        pg.commit()
    except psycopg.errors.UniqueViolation:
        # another load created it at the same moment
        pg.rollback()


def _claim_load(pg: psycopg.Connection, ctx: StepContext) -> int | None:
    """Insert this task's ledger row; return the recorded row count if it already existed.

    A concurrent attempt of the same task waits here on the primary key until
    the first one commits or rolls back.
    """
    claimed = pg.execute(
        sql.SQL(
            "INSERT INTO {} (pipeline, run_id, task_id, rows, loaded_at) "
            "VALUES (%s, %s, %s, 0, now()) ON CONFLICT DO NOTHING RETURNING 1"
        ).format(sql.Identifier(LOADS_TABLE)),
        (ctx.pipeline, ctx.run_id, ctx.load_key),
    ).fetchone()
    if claimed is not None:
        return None
    row = pg.execute(
        sql.SQL("SELECT rows FROM {} WHERE pipeline = %s AND run_id = %s AND task_id = %s").format(
            sql.Identifier(LOADS_TABLE)
        ),
        (ctx.pipeline, ctx.run_id, ctx.load_key),
    ).fetchone()
    return int(row[0]) if row else 0


def _record_rows(pg: psycopg.Connection, ctx: StepContext, rows: int) -> None:
    pg.execute(
        sql.SQL(
            "UPDATE {} SET rows = %s, loaded_at = now() "
            "WHERE pipeline = %s AND run_id = %s AND task_id = %s"
        ).format(sql.Identifier(LOADS_TABLE)),
        (rows, ctx.pipeline, ctx.run_id, ctx.load_key),
    )


def _table_columns(pg: psycopg.Connection, table: TableName) -> dict[str, str] | None:
    """The table's columns in order, name -> type name (pg_type.typname, e.g. ``int4``),
    or None if it does not exist."""
    qualified = _identifier(table).as_string(pg)
    found = pg.execute("SELECT to_regclass(%s)::oid", (qualified,)).fetchone()
    if found is None or found[0] is None:
        return None
    rows = pg.execute(
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (found[0],),
    ).fetchall()
    return {name: type_name for name, type_name in rows}


def _create_table(pg: psycopg.Connection, table: TableName, schema: object, key: list[str]) -> None:
    if table.schema:
        pg.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
    parts = [
        sql.SQL("{} {}").format(
            sql.Identifier(field.name),
            sql.SQL(postgres_type(field.type) + (" NOT NULL" if field.name in key else "")),
        )
        for field in schema  # type: ignore[attr-defined]
    ]
    if key:
        parts.append(
            sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
        )
    pg.execute(
        sql.SQL("CREATE TABLE {} ({})").format(_identifier(table), sql.SQL(", ").join(parts))
    )


def _copy(
    ctx: StepContext,
    pg: psycopg.Connection,
    into: sql.Composable,
    column_list: sql.Composable,
    copy_format: str,
    encoded: Iterator[tuple[int, bytes]],
) -> int:
    """Send ``encoded`` chunks (encoded on a worker thread) to ``COPY into FROM STDIN``."""
    rows = 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
        into, column_list, sql.SQL(copy_format)
    )
    with pg.cursor() as cursor, cursor.copy(statement) as copy:
        chunks = in_background(encoded)
        try:
            for count, data in chunks:
                ctx.check_cancelled()
                copy.write(data)
                rows += count
                ctx.report_rows(rows)
        finally:
            chunks.close()
    return rows


def _merge(
    pg: psycopg.Connection,
    target: sql.Composable,
    stage: sql.Composable,
    columns: list[str],
    key: list[str],
) -> int:
    """Insert the staged rows whose key is new; update those whose other values changed."""
    column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    others = [c for c in columns if c not in key]
    if others:
        action = sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in others
            ),
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in others),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in others),
        )
    else:
        action = sql.SQL("DO NOTHING")
    # temp tables are never auto-analyzed; without statistics the anti-join below
    # would be planned as a nested loop
    pg.execute(sql.SQL("ANALYZE {}").format(stage))
    # let the anti-join's hash table stay in memory instead of spilling in batches
    pg.execute(f"SET LOCAL work_mem = '{MERGE_WORK_MEM}'")
    # skip the staged rows identical to the target's before ON CONFLICT, which would
    # otherwise lock (and so write) every conflicting row even when it updates none
    unchanged = sql.SQL(" AND ").join(
        [sql.SQL("o.{} = s.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in key]
        + (
            [
                sql.SQL("({}) IS NOT DISTINCT FROM ({})").format(
                    sql.SQL(", ").join(sql.SQL("o.{}").format(sql.Identifier(c)) for c in others),
                    sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in others),
                )
            ]
            if others
            else []
        )
    )
    cursor = pg.execute(
        sql.SQL(
            "INSERT INTO {} AS t ({}) SELECT {} FROM {} AS s "
            "WHERE NOT EXISTS (SELECT FROM {} AS o WHERE {}) ON CONFLICT ({}) {}"
        ).format(
            target,
            column_list,
            sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in columns),
            stage,
            target,
            unchanged,
            sql.SQL(", ").join(map(sql.Identifier, key)),
            action,
        )
    )
    return cursor.rowcount


def _load_error(exc: psycopg.Error, config: LoadConfig, ctx: StepContext) -> StepError:
    message = driver_message(exc)
    diag = getattr(exc, "diag", None)
    context = getattr(diag, "context", None) if diag is not None else None
    if context:
        # e.g. "COPY customers, line 3, column id: "x"" says where the bad value is
        message = f"{message} ({context.strip().splitlines()[0]})"
    sqlstate = getattr(exc, "sqlstate", None) or ""
    text = ctx.connections.redact(f"load into {config.table} failed, nothing was loaded: {message}")
    if sqlstate == "21000":
        return PermanentStepError(
            f"{text}; the input holds the same key ({', '.join(config.key)}) more than once: "
            "dedupe it first"
        )
    if sqlstate == "42P10":
        return PermanentStepError(
            f"{text}; upsert needs a primary key or unique constraint on "
            f"({', '.join(config.key)}) in {config.table}"
        )
    if sqlstate[:2] in _BAD_DATA_CLASSES:
        return PermanentStepError(text)
    return StepError(text)
