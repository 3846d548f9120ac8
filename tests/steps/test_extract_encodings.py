"""extract.csv never stores undecodable bytes: it reads the declared encoding or fails
naming the file, the line and the encoding."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from batchpilot.errors import PermanentStepError
from batchpilot.steps.extract import CSV_BLOCK_BYTES

from .helpers import make_context, make_step, output_table, run_step

LATIN_1 = "id,name\n1,Ann\n2,Jér\n3,Zoë\n".encode("latin-1")


def extract(tmp_path: Path, data: bytes, **config) -> pa.Table:
    path = tmp_path / "people.csv"
    path.write_bytes(data)
    return output_table(run_step("extract.csv", make_context(tmp_path), path=str(path), **config))


def refusal(tmp_path: Path, data: bytes, **config) -> str:
    with pytest.raises(PermanentStepError) as caught:
        extract(tmp_path, data, **config)
    return str(caught.value)


def test_latin_1_read_as_utf_8_fails_naming_file_line_byte_and_a_fix(tmp_path):
    message = refusal(tmp_path, LATIN_1)
    assert message == (
        f"cannot read CSV {tmp_path / 'people.csv'}: line 3 (byte 17), column 'name', is not "
        "valid utf-8 (bytes e9); set the file's encoding in the step's config, "
        "e.g. 'encoding: latin-1' or 'encoding: cp1252'"
    )


def test_invalid_bytes_far_into_the_file_are_found_by_line(tmp_path):
    good_rows = (3 * CSV_BLOCK_BYTES) // len(b"123456,plain text\n")
    data = b"id,name\n" + b"".join(b"%06d,plain text\n" % i for i in range(good_rows))
    message = refusal(tmp_path, data + "7,Jér\n".encode("latin-1"))
    assert f"line {good_rows + 2} (byte {len(data) + 3})" in message
    assert "is not valid utf-8" in message and "'encoding: latin-1'" in message


def test_an_undecodable_header_fails_on_line_1(tmp_path):
    message = refusal(tmp_path, "id,prénom\n1,Ann\n".encode("latin-1"))
    assert "line 1 (byte 5) is not valid utf-8" in message


def test_a_column_declared_text_fails_the_same_way(tmp_path):
    message = refusal(tmp_path, LATIN_1, column_types={"name": "text"})
    assert "line 3 (byte 17) is not valid utf-8" in message


def test_a_byte_undefined_in_cp1252_fails_naming_cp1252(tmp_path):
    message = refusal(tmp_path, b"id,name\n1,a\x81b\n", encoding="cp1252")
    assert "line 2 (byte 11) is not valid cp1252 (bytes 81)" in message
    assert "'encoding: latin-1'" in message


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("latin-1", LATIN_1),
        ("latin1", LATIN_1),
        ("cp1252", "id,name\n1,Ann\n2,Jér\n3,Zoë\n".encode("cp1252")),
        ("utf-16", "id,name\n1,Ann\n2,Jér\n3,Zoë\n".encode("utf-16")),
        ("utf-16-le", "id,name\n1,Ann\n2,Jér\n3,Zoë\n".encode("utf-16-le")),
        ("utf-8-sig", "id,name\n1,Ann\n2,Jér\n3,Zoë\n".encode("utf-8-sig")),
        ("utf-8", "id,name\n1,Ann\n2,Jér\n3,Zoë\n".encode("utf-8-sig")),
        ("UTF8", "id,name\n1,Ann\n2,Jér\n3,Zoë\n".encode()),
    ],
)
def test_declared_encodings_are_read_as_text(tmp_path, encoding, data):
    table = extract(tmp_path, data, encoding=encoding)
    assert table.schema == pa.schema({"id": pa.int64(), "name": pa.string()})
    assert table.column("name").to_pylist() == ["Ann", "Jér", "Zoë"]


def test_cp1252_characters_absent_from_latin_1_are_read(tmp_path):
    table = extract(tmp_path, "id,price\n1,5 €\n2,“quoted”\n".encode("cp1252"), encoding="cp1252")
    assert table.column("price").to_pylist() == ["5 €", "“quoted”"]


def test_a_column_declared_binary_keeps_its_bytes(tmp_path):
    table = extract(tmp_path, LATIN_1, column_types={"name": "binary"})
    assert table.column("name").to_pylist() == [b"Ann", b"J\xe9r", b"Zo\xeb"]


def test_an_unknown_encoding_is_a_config_error():
    with pytest.raises(ValidationError, match="unknown encoding 'latin-9000'"):
        make_step("extract.csv", path="x.csv", encoding="latin-9000")
