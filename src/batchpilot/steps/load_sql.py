"""``load.sql``: load the input into a table of any SQLAlchemy database, exactly once.

Rows go in with chunked multi-row INSERTs inside one transaction that also
records the load in ``batchpilot_loads``; a retry or a resume of a load that
committed is skipped. For bulk PostgreSQL loads prefer ``load.postgres`` (COPY).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Double,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    func,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.schema import CreateSchema
from sqlalchemy.types import JSON, TypeEngine

from batchpilot.artifacts import iter_batches, read_schema
from batchpilot.errors import PermanentStepError, StepError
from batchpilot.steps._database import (
    CHUNK_ROWS,
    LOADS_TABLE,
    LoadConfig,
    TableName,
    check_load_columns,
    driver_message,
    open_connection,
    refuse_empty_replace,
    storage_type,
)
from batchpilot.steps.base import Step, StepContext, StepResult


def _ledger(metadata: MetaData) -> Table:
    return Table(
        LOADS_TABLE,
        metadata,
        Column("pipeline", String(255), nullable=False),
        Column("run_id", String(255), nullable=False),
        Column("task_id", String(255), nullable=False),
        Column("rows", BigInteger, nullable=False, default=0),
        Column("loaded_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("pipeline", "run_id", "task_id"),
    )


def sqlalchemy_type(arrow_type: pa.DataType, is_key: bool = False) -> TypeEngine[Any]:
    """The portable SQLAlchemy column type for ``arrow_type`` (bounded text for key columns,
    which some databases cannot index otherwise)."""
    t = storage_type(arrow_type)
    if pa.types.is_boolean(t):
        return Boolean()
    if t in (pa.int8(), pa.int16(), pa.uint8()):
        return SmallInteger()
    if t in (pa.int32(), pa.uint16()):
        return Integer()
    if t in (pa.int64(), pa.uint32()):
        return BigInteger()
    if t == pa.uint64():
        return Numeric(20, 0)
    if pa.types.is_floating(t):
        return Double()
    if pa.types.is_decimal(t):
        return Numeric(t.precision, t.scale)
    if pa.types.is_binary(t) or pa.types.is_fixed_size_binary(t):
        return LargeBinary()
    if pa.types.is_date(t):
        return Date()
    if pa.types.is_timestamp(t):
        return DateTime(timezone=t.tz is not None)
    if pa.types.is_time(t):
        return Time()
    if pa.types.is_duration(t):
        return Interval()
    if pa.types.is_nested(t):
        return JSON()
    return String(255) if is_key else Text()


class SqlLoadConfig(LoadConfig):
    pass


class SqlLoad(Step[SqlLoadConfig]):
    """Loads the input into ``table`` on any SQLAlchemy connection (SQLite, PostgreSQL,
    MySQL…) by ``mode``: ``append``, ``replace`` (DELETE then insert) or ``upsert`` on
    ``key`` (insert new keys, update rows whose values changed). A ``replace`` with
    zero input rows fails (permanent) unless ``allow_empty: true``.

    Same contract as ``load.postgres``: one transaction, exactly once per
    (pipeline, run, task), missing table created when ``create`` is true.
    Raises :class:`PermanentStepError` for bad data or a column the table lacks.
    """

    type_name = "load.sql"
    Config = SqlLoadConfig
    connection_fields = ("connection",)

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        connection = ctx.connections.get(config.connection)
        source = ctx.single_input()
        schema = read_schema(source)
        name = config.table_name
        metadata: dict[str, Any] = {"mode": config.mode, "table": str(name)}
        if config.key:
            metadata["key"] = list(config.key)
        try:
            with open_connection(ctx, connection) as conn:
                ledger = _ledger(MetaData())
                with conn.begin():
                    ledger.create(conn, checkfirst=True)
                with conn.begin():
                    recorded = _recorded_rows(conn, ledger, ctx)
                    if recorded is not None:
                        ctx.log.info(
                            "skipped: task %s of run %s already loaded %d rows into %s",
                            ctx.load_key,
                            ctx.run_id,
                            recorded,
                            name,
                        )
                        metadata.update(rows=recorded, already_loaded=True)
                        return StepResult(rows_in=source.rows, rows_out=recorded, metadata=metadata)
                    refuse_empty_replace(config, source.rows, ctx.task_id)
                    conn.execute(
                        ledger.insert().values(
                            pipeline=ctx.pipeline,
                            run_id=ctx.run_id,
                            task_id=ctx.load_key,
                            rows=0,
                            loaded_at=func.now(),
                        )
                    )
                    target = _target_table(conn, name, schema, config)
                    if config.mode == "replace":
                        conn.execute(target.delete())
                    statement = _insert_statement(conn, target, schema.names, config)
                    rows = 0
                    for batch in iter_batches(source):
                        for offset in range(0, batch.num_rows, CHUNK_ROWS):
                            ctx.check_cancelled()
                            chunk = batch.slice(offset, CHUNK_ROWS)
                            conn.execute(statement, chunk.to_pylist())
                            rows += chunk.num_rows
                            ctx.report_rows(rows)
                    conn.execute(
                        update(ledger)
                        .where(
                            ledger.c.pipeline == ctx.pipeline,
                            ledger.c.run_id == ctx.run_id,
                            ledger.c.task_id == ctx.load_key,
                        )
                        .values(rows=rows)
                    )
        except IntegrityError as exc:
            raise PermanentStepError(_failure(config, ctx, exc)) from exc
        except (DBAPIError, SQLAlchemyError) as exc:
            raise StepError(_failure(config, ctx, exc)) from exc
        ctx.log.info("%s: loaded %d rows into %s", config.mode, rows, name)
        metadata.update(rows=rows, already_loaded=False)
        return StepResult(rows_in=source.rows, rows_out=rows, metadata=metadata)


def _failure(config: LoadConfig, ctx: StepContext, exc: BaseException) -> str:
    return ctx.connections.redact(
        f"load into {config.table} failed, nothing was loaded: {driver_message(exc)}"
    )


def _recorded_rows(conn: Connection, ledger: Table, ctx: StepContext) -> int | None:
    row = conn.execute(
        select(ledger.c.rows).where(
            ledger.c.pipeline == ctx.pipeline,
            ledger.c.run_id == ctx.run_id,
            ledger.c.task_id == ctx.load_key,
        )
    ).first()
    return None if row is None else int(row[0])


def _target_table(
    conn: Connection, name: TableName, schema: pa.Schema, config: LoadConfig
) -> Table:
    """Reflect the target table, or create it from the input's schema."""
    inspector = inspect(conn)
    exists = inspector.has_table(name.name, schema=name.schema)
    metadata = MetaData()
    if exists:
        table = Table(name.name, metadata, schema=name.schema, autoload_with=conn)
        check_load_columns(list(schema.names), [c.name for c in table.columns], config)
        return table
    check_load_columns(list(schema.names), None, config)
    columns: list[Any] = [
        Column(
            f.name,
            sqlalchemy_type(f.type, is_key=f.name in config.key),
            nullable=f.name not in config.key,
        )
        for f in schema
    ]
    if config.key:
        columns.append(PrimaryKeyConstraint(*config.key))
    table = Table(name.name, metadata, *columns, schema=name.schema)
    if name.schema and conn.dialect.name not in {"sqlite"}:
        conn.execute(CreateSchema(name.schema, if_not_exists=True))
    table.create(conn)
    return table


def _insert_statement(
    conn: Connection, target: Table, columns: list[str], config: LoadConfig
) -> Any:
    """A plain INSERT, or the dialect's upsert on ``config.key``."""
    if config.mode != "upsert":
        return target.insert()
    others = [c for c in columns if c not in config.key]
    dialect = conn.dialect.name
    if dialect in {"sqlite", "postgresql"}:
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        statement = insert(target)
        if not others:
            return statement.on_conflict_do_nothing(index_elements=config.key)
        excluded = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=config.key,
            set_={c: excluded[c] for c in others},
            where=or_(*(target.c[c].is_distinct_from(excluded[c]) for c in others)),
        )
    if dialect in {"mysql", "mariadb"}:
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        statement = mysql_insert(target)
        first_key = config.key[0]
        updates = {c: statement.inserted[c] for c in others} or {first_key: target.c[first_key]}
        return statement.on_duplicate_key_update(updates)
    raise StepError(
        f"load.sql cannot upsert on {dialect}; use mode append or replace, "
        "or a sql step with your database's MERGE"
    )


STEPS = (SqlLoad,)
