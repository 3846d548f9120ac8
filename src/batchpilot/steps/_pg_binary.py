"""Arrow record batches as PostgreSQL ``COPY … (FORMAT binary)`` input.

Binary COPY skips the server's text parsing (about a third of a CSV COPY's
time on numbers and timestamps), but the server then trusts that every field
is already in the target column's own binary layout. So each input column is
first cast to the Arrow type that has exactly that layout (``wire_schema``),
and only when the cast cannot change meaning: integers into integer columns
(range-checked), floats or integers into float columns, text into text,
dates into dates, naive timestamps into ``timestamp``, zoned ones into
``timestamptz``, bytes into ``bytea``. Any other pairing (a domain, numeric,
json, text into a date column…) keeps the CSV path, where PostgreSQL's own
input functions decide. The encoding itself is pgpq's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import pgpq
import pyarrow as pa
import pyarrow.compute as pc

from batchpilot.steps._database import storage_type

#: PostgreSQL type name (pg_type.typname) -> the Arrow type whose pgpq encoding it reads
_WIRE_TYPES: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "bytea": pa.binary(),
}

_SOURCE_FITS: dict[str, Callable[[pa.DataType], bool]] = {
    "int2": pa.types.is_integer,
    "int4": pa.types.is_integer,
    "int8": pa.types.is_integer,
    "float4": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    "float8": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    "bool": pa.types.is_boolean,
    "text": pa.types.is_string,
    "varchar": pa.types.is_string,
    "date": pa.types.is_date,
    "timestamp": lambda t: pa.types.is_timestamp(t) and t.tz is None,
    "timestamptz": lambda t: pa.types.is_timestamp(t) and t.tz is not None,
    "bytea": lambda t: pa.types.is_binary(t) or pa.types.is_fixed_size_binary(t),
}


#: pg_type names as users write them in DDL, for messages
_SQL_NAMES = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "varchar",
    "timestamptz": "timestamp with time zone",
}


class BadValue(ValueError):
    """A value that does not fit its target column (e.g. 70000 into a smallint)."""

    def __init__(self, column: str, target_type: str, reason: str) -> None:
        name = _SQL_NAMES.get(target_type, target_type)
        super().__init__(f"column {column}: a value does not fit {name}: {reason}")
        self.column = column


def wire_schema(source: pa.Schema, target_types: Sequence[str]) -> pa.Schema | None:
    """The schema to cast ``source`` to for a binary COPY into columns of ``target_types``
    (pg_type names, in the same order), or None when some column needs the CSV path."""
    fields = []
    for field, target in zip(source, target_types, strict=True):
        fits = _SOURCE_FITS.get(target)
        if fits is None or not fits(storage_type(field.type)):
            return None
        fields.append(pa.field(field.name, _WIRE_TYPES[target]))
    return pa.schema(fields)


def _to_wire(array: pa.Array, wire: pa.DataType) -> pa.Array:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if array.type == wire:
        return array
    if pa.types.is_timestamp(array.type) and array.type.unit == "ns":
        # PostgreSQL keeps microseconds and rounds finer input, as its text input does
        array = pc.round_temporal(array, unit="microsecond")
        return pc.cast(array, wire, safe=False)
    if pa.types.is_floating(wire):
        return pc.cast(array, wire, safe=False)  # rounds as float8in/float4in would
    if pa.types.is_date64(array.type):
        return pc.cast(array, wire, safe=False)  # the day, as the CSV path writes it
    return pc.cast(array, wire)


def encoded_batches(
    batches: Iterable[pa.RecordBatch], wire: pa.Schema, target_types: Sequence[str]
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(rows, bytes)``: the binary COPY header, each batch cast to ``wire`` and
    encoded, then the trailer (with 0 rows). Raises :class:`BadValue` for a value that
    does not fit its column."""
    encoder = pgpq.ArrowToPostgresBinaryEncoder(wire)
    yield 0, bytes(encoder.write_header())
    for batch in batches:
        if not batch.num_rows:
            continue
        arrays = []
        for array, field, target in zip(batch.columns, wire, target_types, strict=True):
            try:
                arrays.append(_to_wire(array, field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise BadValue(field.name, target, str(exc)) from exc
        cast = pa.RecordBatch.from_arrays(arrays, schema=wire)
        yield batch.num_rows, bytes(encoder.write_batch(cast))
    yield 0, bytes(encoder.finish())
