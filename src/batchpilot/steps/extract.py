"""Extract steps: read a CSV, Excel or Parquet file, or a SQL query, into an Arrow output.

CSV, Parquet and SQL sources are streamed batch by batch into the task's
output, so memory stays bounded whatever the source's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field, field_validator, model_validator
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from batchpilot.errors import PermanentStepError, StepError
from batchpilot.spec.templating import SQL_FOR_SQLALCHEMY, BindParams
from batchpilot.steps._csv_encoding import check_encoding, invalid_bytes_reason, pyarrow_encoding
from batchpilot.steps._database import (
    CHUNK_ROWS,
    driver_message,
    first_line,
    open_connection,
)
from batchpilot.steps.base import Step, StepConfig, StepContext, StepResult

#: bytes of CSV parsed per block. Column types are inferred from the first block;
#: above ~2 MB, freed block buffers stay in the glibc heap and peak memory grows
#: with the file (measured: 8 MB blocks 213 MB at 1M rows, 419 MB at 5M; 2 MB
#: blocks 161 MB for both, at the same speed).
CSV_BLOCK_BYTES = 2 << 20

#: friendly names accepted in ``column_types`` besides pyarrow's own (``int64``, ``timestamp[us]``)
_TYPE_ALIASES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "integer": pa.int64(),
    "bigint": pa.int64(),
    "float": pa.float64(),
    "double": pa.float64(),
    "text": pa.string(),
    "str": pa.string(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "datetime": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def parse_arrow_type(name: str) -> pa.DataType:
    """Return the Arrow type named ``name`` (``int64``, ``string``, ``date``, ``decimal(12,2)``…).

    Raises ``ValueError`` naming the unknown type.
    """
    key = name.strip().lower()
    if key in _TYPE_ALIASES:
        return _TYPE_ALIASES[key]
    if key.startswith(("decimal(", "numeric(")) and key.endswith(")"):
        precision, _, scale = key[key.index("(") + 1 : -1].partition(",")
        try:
            return pa.decimal128(int(precision), int(scale or 0))
        except (ValueError, pa.ArrowInvalid) as exc:
            raise ValueError(f"invalid decimal type {name!r}: {exc}") from None
    try:
        return pa.type_for_alias(key)
    except ValueError:
        known = ", ".join(sorted(_TYPE_ALIASES))
        raise ValueError(
            f"unknown column type {name!r}; use an Arrow type name (int64, float64, string, "
            f"bool, date32, timestamp[us], decimal(12,2)) or one of: {known}"
        ) from None


def _require_file(path: str, what: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise StepError(f"{what} file not found: {file} (working folder: {Path.cwd()})")
    return file


class CsvConfig(StepConfig):
    path: str
    delimiter: str = ","
    encoding: str = "utf-8"
    header: bool = True
    null_values: list[str] | None = None
    columns: list[str] | None = None
    column_types: dict[str, str] = Field(default_factory=dict)

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if value == "\\t":
            value = "\t"
        if len(value) != 1:
            raise ValueError(f"delimiter must be one character, got {value!r}")
        return value

    @field_validator("column_types")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        for type_name in value.values():
            parse_arrow_type(type_name)
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        return check_encoding(value)


class CsvExtract(Step[CsvConfig]):
    """Streams a CSV file into the output with pyarrow's parser, in bounded memory.

    ``header: false`` names the columns ``f0, f1, …`` unless ``columns`` names them;
    with a header, ``columns`` selects (and orders) the columns to keep.
    ``column_types`` fixes types (``{id: int64, day: date}``) instead of inferring
    them from the first block. As in PostgreSQL's CSV format, an unquoted empty
    field is NULL and a quoted one (``""``) an empty string; ``null_values``
    replaces the list of unquoted values read as NULL (default ``[""]``).
    ``encoding`` (default UTF-8; a byte-order mark is skipped) names the file's
    text encoding: ``latin-1``, ``cp1252``, ``utf-16``, ``utf-8-sig``…
    Raises :class:`StepError` if the file is missing or a row cannot be parsed,
    and :class:`PermanentStepError` naming the line if bytes do not decode.
    """

    compensable = False

    type_name = "extract.csv"
    Config = CsvConfig

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        path = _require_file(config.path, "CSV")
        read_options = pacsv.ReadOptions(
            encoding=pyarrow_encoding(config.encoding),
            block_size=CSV_BLOCK_BYTES,
            autogenerate_column_names=not config.header and not config.columns,
            column_names=config.columns if not config.header and config.columns else None,
        )
        convert_options = pacsv.ConvertOptions(
            column_types={name: parse_arrow_type(t) for name, t in config.column_types.items()},
            include_columns=config.columns if config.header and config.columns else None,
        )
        # as PostgreSQL's and DuckDB's CSV readers do: an unquoted empty field (or one of
        # null_values) is NULL, a quoted one ("") is an empty string
        convert_options.null_values = config.null_values if config.null_values is not None else [""]
        convert_options.strings_can_be_null = True
        convert_options.quoted_strings_can_be_null = False
        parse_options = pacsv.ParseOptions(delimiter=config.delimiter)
        # A Python file object, not the path: given a path, pyarrow reads ahead of the
        # consumer and memory grows with the file (108 MB at 1M rows, 301 MB at 5M,
        # measured); through a file object it stays flat at the same speed.
        source = open(path, "rb")  # noqa: SIM115 - closed below, after the last batch
        try:
            reader = pacsv.open_csv(
                source,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
        except (pa.ArrowInvalid, pa.ArrowKeyError, OSError, UnicodeDecodeError, LookupError) as exc:
            source.close()
            raise _csv_error(path, config, exc) from exc
        try:
            _check_decoded(reader.schema, path, config)
        except PermanentStepError:
            source.close()
            raise

        def batches() -> Iterator[pa.RecordBatch]:
            rows = 0
            while True:
                ctx.check_cancelled()
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
                    raise _csv_error(path, config, exc, rows) from exc
                rows += batch.num_rows
                ctx.report_rows(rows)
                yield batch

        with source:
            ref = ctx.write_output_batches(reader.schema, batches())
        return StepResult(output=ref, rows_out=ref.rows, metadata={"path": str(path)})


def _check_decoded(schema: pa.Schema, path: Path, config: CsvConfig) -> None:
    """Raise :class:`PermanentStepError` if a column name, or a column of the first block
    (which pyarrow then types as binary unless ``column_types`` asks for it), did not decode."""
    try:
        names = schema.names
    except UnicodeDecodeError:
        raise PermanentStepError(invalid_bytes_reason(path, config.encoding)) from None
    for name, arrow_type in zip(names, schema.types, strict=True):
        if pa.types.is_binary(arrow_type) and name not in config.column_types:
            raise PermanentStepError(invalid_bytes_reason(path, config.encoding, name))


def _csv_error(
    path: Path, config: CsvConfig, exc: BaseException, rows_read: int | None = None
) -> StepError:
    message = first_line(str(exc), limit=300) or type(exc).__name__
    if isinstance(exc, UnicodeDecodeError) or "invalid utf8" in message.lower():
        # bad bytes stay bad: a retry cannot help
        return PermanentStepError(invalid_bytes_reason(path, config.encoding))
    hint = ""
    if "conversion error" in message.lower():
        hint = " (types are inferred from the first rows; set column_types for this column" + (
            f", {rows_read} rows were read before it)" if rows_read else ")"
        )
    return StepError(f"cannot read CSV {path}: {message}{hint}")


class ExcelConfig(StepConfig):
    path: str
    sheet: str | int = 0


class ExcelExtract(Step[ExcelConfig]):
    """Reads one sheet of an .xlsx/.xls/.ods workbook (by name or 0-based index) with calamine.

    The first row is the header. Raises :class:`StepError` if the file or the
    sheet is missing (listing the sheets it has).
    """

    compensable = False

    type_name = "extract.excel"
    Config = ExcelConfig

    def run(self, ctx: StepContext) -> StepResult:
        import fastexcel

        config = self.config
        path = _require_file(config.path, "Excel")
        try:
            reader = fastexcel.read_excel(path)
        except fastexcel.FastExcelError as exc:
            raise StepError(f"cannot open workbook {path}: {first_line(str(exc))}") from exc
        names = list(reader.sheet_names)
        sheet = config.sheet
        if isinstance(sheet, int) and not 0 <= sheet < len(names):
            raise StepError(
                f"workbook {path} has no sheet number {sheet} (0-based); it has {len(names)}: "
                + ", ".join(names)
            )
        if isinstance(sheet, str) and sheet not in names:
            raise StepError(f"workbook {path} has no sheet '{sheet}'; it has: {', '.join(names)}")
        try:
            table = reader.load_sheet(sheet).to_arrow()
        except fastexcel.FastExcelError as exc:
            raise StepError(
                f"cannot read sheet '{sheet}' of {path}: {first_line(str(exc))}"
            ) from exc
        ref = ctx.write_output(
            pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
        )
        sheet_name = names[sheet] if isinstance(sheet, int) else sheet
        return StepResult(
            output=ref, rows_out=ref.rows, metadata={"path": str(path), "sheet": sheet_name}
        )


class ParquetConfig(StepConfig):
    path: str
    columns: list[str] | None = None


class ParquetExtract(Step[ParquetConfig]):
    """Streams a Parquet file (or a folder of Parquet files) into the output, batch by batch.

    ``columns`` reads only those columns. Raises :class:`StepError` if the path
    is missing or not Parquet.
    """

    compensable = False

    type_name = "extract.parquet"
    Config = ParquetConfig

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        path = _require_file(config.path, "Parquet")
        try:
            if path.is_dir():
                # imported here: pyarrow.dataset imports pandas when it is installed (~0.5 s)
                import pyarrow.dataset as pads

                dataset = pads.dataset(path, format="parquet")
                schema = dataset.schema
                if config.columns:
                    schema = pa.schema([schema.field(c) for c in config.columns])
                source = dataset.to_batches(columns=config.columns, batch_size=65_536)
            else:
                import pyarrow.parquet as pq  # here: a CSV pipeline never pays for Parquet

                parquet = pq.ParquetFile(path)
                schema = parquet.schema_arrow
                if config.columns:
                    schema = pa.schema([schema.field(c) for c in config.columns])
                source = parquet.iter_batches(batch_size=65_536, columns=config.columns)
        except KeyError as exc:
            raise StepError(f"Parquet {path} has no column {exc}") from exc
        except (pa.ArrowInvalid, OSError) as exc:
            raise StepError(f"cannot read Parquet {path}: {first_line(str(exc))}") from exc

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from ctx.counted_batches(source)
            except (pa.ArrowInvalid, OSError) as exc:
                raise StepError(f"cannot read Parquet {path}: {first_line(str(exc))}") from exc

        ref = ctx.write_output_batches(schema, batches())
        return StepResult(output=ref, rows_out=ref.rows, metadata={"path": str(path)})


class SqlExtractConfig(StepConfig):
    connection: str
    query: Annotated[str, SQL_FOR_SQLALCHEMY]
    params: Annotated[dict[str, Any], BindParams()] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_blank(self) -> SqlExtractConfig:
        if not self.query.strip():
            raise ValueError("query is empty")
        return self


# PostgreSQL type OIDs whose Arrow type is known before any row is read
_PG_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    17: pa.binary(),
    18: pa.string(),
    19: pa.string(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    26: pa.int64(),
    114: pa.string(),
    700: pa.float32(),
    701: pa.float64(),
    1042: pa.string(),
    1043: pa.string(),
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    1186: pa.duration("us"),
    2950: pa.string(),
    3802: pa.string(),
}
_PG_NUMERIC = 1700


class SqlExtract(Step[SqlExtractConfig]):
    """Runs ``query`` (bind ``params`` by ``:name``) on a connection and streams the rows out.

    Works with any SQLAlchemy URL. PostgreSQL column types come from the
    result's description (an unconstrained ``numeric`` becomes float64; CAST to
    ``numeric(p,s)`` to keep exact decimals); other databases' types are inferred
    from the first rows. Raises :class:`StepError` with the database's message.
    """

    compensable = False

    type_name = "extract.sql"
    Config = SqlExtractConfig
    connection_fields = ("connection",)

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        connection = ctx.connections.get(config.connection)
        with open_connection(ctx, connection) as conn:
            try:
                result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(
                    text(config.query), config.params
                )
            except (DBAPIError, SQLAlchemyError) as exc:
                raise StepError(
                    f"query on '{connection.name}' failed: {driver_message(exc)}"
                ) from exc
            if not result.returns_rows:
                raise StepError(
                    "extract.sql: the query returned no result set; "
                    "use a 'sql' step for statements that change data"
                )
            names = list(result.keys())
            planned = _planned_types(result.cursor.description, conn.dialect.name)
            ref = _stream_rows(ctx, result, names, planned)
        return StepResult(output=ref, rows_out=ref.rows, metadata={"columns": names})


def _planned_types(description: Sequence[Any] | None, dialect: str) -> list[pa.DataType | None]:
    if not description:
        return []
    planned: list[pa.DataType | None] = []
    for column in description:
        if dialect != "postgresql":
            planned.append(None)
            continue
        oid = column[1]
        if oid == _PG_NUMERIC:
            precision, scale = getattr(column, "precision", None), getattr(column, "scale", None)
            if precision and precision <= 38:
                planned.append(pa.decimal128(precision, scale or 0))
            else:
                planned.append(pa.float64())
        else:
            planned.append(_PG_TYPES.get(oid, pa.string()))
    return planned


def _stream_rows(
    ctx: StepContext, result: Any, names: list[str], planned: list[pa.DataType | None]
) -> Any:
    partitions = result.partitions()
    try:
        first = next(partitions, [])
    except (DBAPIError, SQLAlchemyError) as exc:
        raise StepError(f"query failed while reading rows: {driver_message(exc)}") from exc
    columns = list(zip(*first, strict=True)) if first else [() for _ in names]
    types: list[pa.DataType] = []
    arrays = []
    for name, values, want in zip(names, columns, planned or [None] * len(names), strict=True):
        array = _to_array(name, list(values), want)
        if pa.types.is_null(array.type):
            array = array.cast(pa.string())
        types.append(array.type)
        arrays.append(array)
    schema = pa.schema(list(zip(names, types, strict=True)))

    def batches() -> Iterator[pa.RecordBatch]:
        rows = len(first)
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        ctx.report_rows(rows)
        try:
            for chunk in partitions:
                ctx.check_cancelled()
                cols = list(zip(*chunk, strict=True))
                yield pa.RecordBatch.from_arrays(
                    [_to_array(n, list(v), t) for n, v, t in zip(names, cols, types, strict=True)],
                    schema=schema,
                )
                rows += len(chunk)
                ctx.report_rows(rows)
        except (DBAPIError, SQLAlchemyError) as exc:
            raise StepError(f"query failed while reading rows: {driver_message(exc)}") from exc

    return ctx.write_output_batches(schema, batches())


def _to_array(name: str, values: list[Any], arrow_type: pa.DataType | None) -> pa.Array:
    if arrow_type is not None and pa.types.is_string(arrow_type):
        return pa.array([_as_text(v) for v in values], pa.string())
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
        if arrow_type is None:
            # mixed Python types in one column (SQLite allows it): keep them as text
            return pa.array([_as_text(v) for v in values], pa.string())
        raise PermanentStepError(
            f"column '{name}' has a value that does not fit {arrow_type} (the type of its first "
            f"rows): {first_line(str(exc))}; CAST the column in the query"
        ) from exc


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


STEPS = (CsvExtract, ExcelExtract, ParquetExtract, SqlExtract)
