"""Deterministic test tables for the benchmarks (not a benchmark itself).

One generator, seeded, so every run (and every machine) measures the same
bytes: 10 columns of mixed types, no nulls (so the JSON round trip is not
penalised by NaN handling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

CITIES = np.array(
    [
        "Amsterdam",
        "Berlin",
        "Bogota",
        "Cairo",
        "Chicago",
        "Dublin",
        "Jakarta",
        "Lagos",
        "Lima",
        "Lisbon",
        "London",
        "Madrid",
        "Manila",
        "Mumbai",
        "Nairobi",
        "Osaka",
        "Oslo",
        "Paris",
        "Prague",
        "Rome",
        "Santiago",
        "Seoul",
        "Sydney",
        "Tokyo",
        "Toronto",
        "Vienna",
        "Warsaw",
        "Zurich",
    ]
)
STATUSES = np.array(["new", "paid", "shipped", "delivered", "returned"])
EPOCH_2024 = np.datetime64("2024-01-01T00:00:00", "s")

#: DDL of the table each load goes into (PostgreSQL); same column order as the CSV
PG_COLUMNS = (
    "id bigint PRIMARY KEY, customer_id bigint, quantity integer, amount double precision, "
    "price double precision, created_at timestamp, shipped_at timestamp, city text, "
    "email text, status text"
)


def make_table(rows: int, seed: int = 42, start_id: int = 1) -> pa.Table:
    """A ``rows``-row table: 3 int, 2 float, 2 timestamp and 3 string columns."""
    rng = np.random.default_rng(seed)
    ids = np.arange(start_id, start_id + rows, dtype=np.int64)
    created = EPOCH_2024 + rng.integers(0, 365 * 86400, rows).astype("timedelta64[s]")
    shipped = created + rng.integers(3600, 10 * 86400, rows).astype("timedelta64[s]")
    id_text = pc.cast(pa.array(ids), pa.string())
    return pa.table(
        {
            "id": ids,
            "customer_id": rng.integers(1, 200_000, rows, dtype=np.int64),
            "quantity": rng.integers(1, 20, rows, dtype=np.int32),
            "amount": np.round(rng.gamma(2.0, 60.0, rows), 2),
            "price": np.round(rng.uniform(0.5, 500.0, rows), 2),
            "created_at": pa.array(created, pa.timestamp("s")),
            "shipped_at": pa.array(shipped, pa.timestamp("s")),
            "city": pa.array(rng.choice(CITIES, rows), pa.string()),
            "email": pc.binary_join_element_wise("u", id_text, "@example.com", ""),
            "status": pa.array(rng.choice(STATUSES, rows), pa.string()),
        }
    )


def write_csv(path: Path, rows: int, chunk: int = 500_000) -> None:
    """Write ``rows`` rows as CSV with a header, chunk by chunk (bounded memory), atomically."""
    partial = path.with_name(path.name + ".partial")
    options = pacsv.WriteOptions(include_header=True)
    schema = make_table(1).schema
    with pacsv.CSVWriter(str(partial), schema, write_options=options) as writer:
        for n, start in enumerate(range(0, rows, chunk)):
            size = min(chunk, rows - start)
            writer.write_table(make_table(size, seed=42 + n, start_id=start + 1))
    partial.replace(path)
