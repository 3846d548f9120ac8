"""Transform steps: DuckDB SQL over upstream outputs, a row filter, and de-duplication.

Upstream outputs are memory-mapped Arrow files, handed to DuckDB without a
copy; results are streamed back as record batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from batchpilot.errors import PermanentStepError, StepError
from batchpilot.spec.templating import SQL_FOR_DUCKDB
from batchpilot.steps._database import first_line
from batchpilot.steps.base import Step, StepConfig, StepContext, StepResult

#: rows per record batch fetched from DuckDB
DUCKDB_BATCH_ROWS = 122_880


def open_duckdb(
    ctx: StepContext, tables: dict[str, pa.Table], allowed_directories: Sequence[str] = ()
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with each table registered as a view under its name, and
    nothing else: no file or network access (except under ``allowed_directories``),
    no extension installed or loaded, and the configuration locked so the query
    cannot turn any of that back on. A cancel of the attempt interrupts the query.
    """
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "preserve_insertion_order": True,
        },
    )
    for name, table in tables.items():
        con.register(name, table)
    if allowed_directories:
        folders = [os.path.join(os.path.realpath(d), "") for d in allowed_directories]
        con.execute("SET allowed_directories = $folders", {"folders": folders})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    ctx.on_cancel(con.interrupt)
    return con


def run_duckdb_query(
    ctx: StepContext, con: duckdb.DuckDBPyConnection, query: str, what: str
) -> pa.RecordBatchReader:
    """Execute ``query`` and return its rows as a stream; raises StepError with DuckDB's
    reason (PermanentStepError when the query reaches for a file it may not touch)."""
    try:
        return con.sql(query).to_arrow_reader(DUCKDB_BATCH_ROWS)
    except duckdb.Error as exc:
        known = ", ".join(ctx.inputs) or "none"
        raise duckdb_failure(what, exc, f" (tables: {known})") from exc


def duckdb_failure(what: str, exc: duckdb.Error, suffix: str = "") -> StepError:
    """The step error for a failed DuckDB query; a refused file access names the opt-in."""
    reason = f"{what} failed: {first_line(str(exc), limit=300)}{suffix}"
    if isinstance(exc, duckdb.PermissionException):
        return PermanentStepError(
            f"{reason}; a transform sees only its upstream tables: to let this node read "
            "files, list their folders under allowed_directories in its config"
        )
    return StepError(reason)


def _stream(ctx: StepContext, reader: pa.RecordBatchReader, what: str):  # type: ignore[no-untyped-def]
    try:
        yield from ctx.counted_batches(reader)
    except duckdb.Error as exc:
        raise duckdb_failure(what, exc) from exc


class SqlTransformConfig(StepConfig):
    query: Annotated[str, SQL_FOR_DUCKDB]
    #: opt-in: folders whose files the query may read (DuckDB also lets it write there)
    allowed_directories: list[str] = Field(default_factory=list)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is empty")
        return value


class SqlTransform(Step[SqlTransformConfig]):
    """Runs a DuckDB ``query`` in which each upstream output is a table named by its node id.

    Raises :class:`StepError` with DuckDB's message (a typo in a column, an
    unknown table) and the table names available.
    """

    compensable = False

    type_name = "transform.sql"
    Config = SqlTransformConfig

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        tables = {node_id: ctx.input_table(node_id) for node_id in ctx.inputs}
        con = open_duckdb(ctx, tables, config.allowed_directories)
        try:
            reader = run_duckdb_query(ctx, con, config.query, "transform.sql query")
            ref = ctx.write_output_batches(
                reader.schema, _stream(ctx, reader, "transform.sql query")
            )
        finally:
            con.close()
        rows_in = sum(t.num_rows for t in tables.values())
        return StepResult(output=ref, rows_in=rows_in, rows_out=ref.rows)


class FilterConfig(StepConfig):
    condition: Annotated[str, SQL_FOR_DUCKDB]
    #: opt-in: folders whose files the query may read (DuckDB also lets it write there)
    allowed_directories: list[str] = Field(default_factory=list)

    @field_validator("condition")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("condition is empty")
        return value


class FilterTransform(Step[FilterConfig]):
    """Keeps the rows of the single input for which ``condition`` (a DuckDB SQL expression)
    is true, in their order; rows_rejected counts the others (false or NULL)."""

    compensable = False

    type_name = "transform.filter"
    Config = FilterConfig

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        table = ctx.input_table()
        con = open_duckdb(ctx, {"input": table}, config.allowed_directories)
        try:
            # the condition is the user's own SQL expression by design; no value is spliced in
            query = f"SELECT * FROM input WHERE ({config.condition}\n)"
            reader = run_duckdb_query(ctx, con, query, f"filter condition {config.condition!r}")
            ref = ctx.write_output_batches(reader.schema, _stream(ctx, reader, "filter"))
        finally:
            con.close()
        return StepResult(
            output=ref,
            rows_in=table.num_rows,
            rows_out=ref.rows,
            rows_rejected=table.num_rows - ref.rows,
        )


class DedupeConfig(StepConfig):
    keys: list[str]
    keep: Literal["first", "last"] = "first"

    @field_validator("keys")
    @classmethod
    def _some_keys(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one key column")
        return value


class DedupeTransform(Step[DedupeConfig]):
    """Keeps one row per distinct ``keys`` (the first or the ``last`` seen), in input order.

    NULL keys count as equal. rows_rejected is the number of duplicates dropped.
    Raises :class:`PermanentStepError` naming a key column the input lacks.
    """

    compensable = False

    type_name = "transform.dedupe"
    Config = DedupeConfig

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        table = ctx.input_table()
        missing = [k for k in config.keys if k not in table.column_names]
        if missing:
            raise PermanentStepError(
                f"dedupe key column(s) {', '.join(missing)} not in the input "
                f"(columns: {', '.join(table.column_names)})"
            )
        n = table.num_rows
        positions = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), 1)
        keyed = table.select(config.keys).append_column("__bp_pos", positions)
        aggregate = "min" if config.keep == "first" else "max"
        try:
            grouped = keyed.group_by(config.keys, use_threads=False).aggregate(
                [("__bp_pos", aggregate)]
            )
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:
            raise PermanentStepError(
                f"cannot group by key column(s) {', '.join(config.keys)}: {first_line(str(exc))}"
            ) from exc
        keep = pc.sort_indices(grouped[f"__bp_pos_{aggregate}"])
        indices = pc.take(grouped[f"__bp_pos_{aggregate}"], keep)
        result = table.take(indices)
        ref = ctx.write_output(result)
        return StepResult(
            output=ref,
            rows_in=n,
            rows_out=ref.rows,
            rows_rejected=n - ref.rows,
            metadata={"keys": list(config.keys), "keep": config.keep, "duplicates": n - ref.rows},
        )


STEPS = (SqlTransform, FilterTransform, DedupeTransform)
