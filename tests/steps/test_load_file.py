"""load.file: stream the input into a CSV or Parquet file, renamed into place."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from .helpers import make_context, make_step, run_step

TABLE = pa.table({"id": [1, 2, 3], "name": ["ann", None, ""]})


def test_load_file_writes_csv_and_creates_folders(tmp_path):
    target = tmp_path / "out" / "daily" / "people.csv"
    ctx = make_context(tmp_path, {"up": TABLE})

    result = run_step("load.file", ctx, path=str(target))

    assert target.read_text().splitlines() == ['"id","name"', '1,"ann"', "2,", '3,""']
    assert result.rows_out == 3
    assert result.metadata["format"] == "csv"
    assert [p.name for p in target.parent.iterdir()] == ["people.csv"]


def test_load_file_writes_parquet_from_the_suffix(tmp_path):
    target = tmp_path / "people.parquet"
    ctx = make_context(tmp_path, {"up": TABLE})

    run_step("load.file", ctx, path=str(target))

    assert pq.read_table(target).equals(TABLE)


def test_load_file_explicit_format_overrides_the_suffix(tmp_path):
    target = tmp_path / "people.dat"
    ctx = make_context(tmp_path, {"up": TABLE})

    run_step("load.file", ctx, path=str(target), format="csv")

    assert pacsv.read_csv(target).num_rows == 3


def test_load_file_replaces_an_existing_file_whole(tmp_path):
    target = tmp_path / "people.csv"
    target.write_text("old content that is much longer than the new one\n" * 100)
    ctx = make_context(tmp_path, {"up": TABLE.slice(0, 1)})

    run_step("load.file", ctx, path=str(target))

    assert target.read_text() == '"id","name"\n1,"ann"\n'


def test_load_file_unknown_suffix_needs_a_format():
    with pytest.raises(ValidationError, match="set format"):
        make_step("load.file", path="out.txt")
