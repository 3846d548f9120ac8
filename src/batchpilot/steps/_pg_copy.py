"""Arrow record batches as PostgreSQL ``COPY … (FORMAT csv)`` input, Arrow→PostgreSQL types,
and the worker thread that encodes COPY input ahead of the sender.

pyarrow's C++ CSV writer quotes every text value (so an empty string is
``""``) and writes NULL as an unquoted empty field: exactly what PostgreSQL's
CSV format reads back as empty string and NULL.
"""

from __future__ import annotations

import io
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from batchpilot.steps._database import storage_type

_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=8192)


def postgres_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type that holds ``arrow_type`` without loss."""
    t = storage_type(arrow_type)
    checks: list[tuple[Callable[[pa.DataType], bool], str]] = [
        (pa.types.is_boolean, "boolean"),
        (lambda x: x in (pa.int8(), pa.int16(), pa.uint8()), "smallint"),
        (lambda x: x in (pa.int32(), pa.uint16()), "integer"),
        (lambda x: x in (pa.int64(), pa.uint32()), "bigint"),
        (lambda x: x == pa.uint64(), "numeric(20,0)"),
        (lambda x: x in (pa.float16(), pa.float32()), "real"),
        (pa.types.is_float64, "double precision"),
        (pa.types.is_string, "text"),
        (pa.types.is_binary, "bytea"),
        (pa.types.is_fixed_size_binary, "bytea"),
        (pa.types.is_date, "date"),
        (pa.types.is_time, "time"),
        (pa.types.is_duration, "interval"),
        (pa.types.is_null, "text"),
    ]
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})" if t.precision <= 1000 else "numeric"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_nested(t):
        return "jsonb"
    for check, name in checks:
        if check(t):
            return name
    return "text"


def _copyable_column(array: pa.Array) -> pa.Array:
    """The column in a form pyarrow's CSV writer renders as PostgreSQL reads it."""
    t = array.type
    if pa.types.is_dictionary(t):
        return _copyable_column(array.dictionary_decode())
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return array.cast(pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pa.array(
            [None if v is None else "\\x" + v.hex() for v in array.to_pylist()], pa.string()
        )
    if pa.types.is_nested(t):
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in array.to_pylist()],
            pa.string(),
        )
    if pa.types.is_duration(t):
        micros = pc.cast(array.cast(pa.duration("us")), pa.int64())
        return pc.binary_join_element_wise(micros.cast(pa.string()), " microseconds", "")
    if pa.types.is_null(t):
        return array.cast(pa.string())
    return array


def _needs_conversion(t: pa.DataType) -> bool:
    return (
        pa.types.is_dictionary(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_nested(t)
        or pa.types.is_duration(t)
        or pa.types.is_null(t)
    )


def batch_to_csv(batch: pa.RecordBatch) -> bytes:
    """Render ``batch`` as COPY CSV input (no header)."""
    if any(_needs_conversion(f.type) for f in batch.schema):
        arrays = [_copyable_column(c) for c in batch.columns]
        batch = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
    sink = io.BytesIO()
    pacsv.write_csv(batch, sink, _CSV_OPTIONS)
    return sink.getvalue()


def csv_chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(rows, csv_bytes)`` per non-empty batch."""
    for batch in batches:
        if batch.num_rows:
            yield batch.num_rows, batch_to_csv(batch)


_DONE = object()


def in_background(
    chunks: Iterator[tuple[int, bytes]], depth: int = 4
) -> Iterator[tuple[int, bytes]]:
    """Yield what ``chunks`` yields, produced by a worker thread ahead of the consumer.

    Encoding then overlaps with sending the previous chunk to the server. At
    most ``depth`` chunks wait in memory. An error in the worker is raised here;
    closing the iterator early stops the worker.
    """
    pending: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    worker = threading.Thread(target=produce, name="batchpilot-copy-encoder", daemon=True)
    worker.start()
    try:
        while True:
            item = pending.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
