"""Text encodings of CSV files: which name pyarrow gets, and where invalid bytes are.

pyarrow reads UTF-8 natively (and skips a UTF-8 byte-order mark itself); any
other encoding goes through Python's codec, block by block. Neither says where
in the file a byte that does not decode sits, so on that error (and only then)
:func:`find_invalid_bytes` reads the file once more, from the start, to name the
line and byte offset. Reading the happy path costs nothing extra.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

#: bytes decoded per read while looking for invalid bytes
SCAN_CHUNK_BYTES = 1 << 20

#: encodings suggested when a file does not decode, most likely first
SUGGESTED_ENCODINGS = ("latin-1", "cp1252", "utf-8")


def check_encoding(name: str) -> str:
    """Return ``name`` if Python (and so pyarrow) knows the encoding; raises ``ValueError``."""
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(
            f"unknown encoding {name!r}; use e.g. utf-8, utf-8-sig, latin-1, cp1252 or utf-16"
        ) from None
    return name


def codec_name(name: str) -> str:
    """Python's canonical name of an encoding (``UTF8`` → ``utf-8``, ``latin1`` → ``iso8859-1``)."""
    return codecs.lookup(name).name


def pyarrow_encoding(name: str) -> str:
    """The encoding to give pyarrow: UTF-8 with or without a byte-order mark is read natively
    (pyarrow skips the mark), everything else through Python's codec."""
    return "utf8" if codec_name(name) in {"utf-8", "utf-8-sig"} else name


@dataclass(frozen=True)
class InvalidBytes:
    """Where a file first stops decoding: 1-based line, 0-based byte offset, the bytes."""

    line: int
    byte_offset: int
    data: bytes


def find_invalid_bytes(path: Path, encoding: str) -> InvalidBytes | None:
    """The first bytes of ``path`` that do not decode as ``encoding``, or None if all do.

    Reads the file in chunks of :data:`SCAN_CHUNK_BYTES` (bounded memory); lines
    are counted in the decoded text, so they are the lines an editor shows.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    lines_before = 0
    offset = 0
    with open(path, "rb") as source:
        while True:
            chunk = source.read(SCAN_CHUNK_BYTES)
            state = decoder.getstate()
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                return _locate(decoder, state, chunk, exc, lines_before, offset)
            lines_before += text.count("\n")
            offset += len(chunk)
            if not chunk:
                return None


def _locate(
    decoder: codecs.IncrementalDecoder,
    state: tuple[bytes, int],
    chunk: bytes,
    exc: UnicodeDecodeError,
    lines_before: int,
    offset: int,
) -> InvalidBytes:
    """Turn a decoding error inside ``chunk`` into a line and file offset.

    The error's position is in the bytes the decoder saw: what it had kept from the
    last chunk plus this one (less a byte-order mark some decoders strip first).
    """
    pending = state[0] if isinstance(state[0], bytes) else b""
    seen = len(pending) + len(chunk)
    position = exc.start + (seen - len(exc.object))
    decoder.setstate(state)
    try:
        before = decoder.decode(chunk[: max(0, position - len(pending))])
    except UnicodeDecodeError:
        before = ""
    return InvalidBytes(
        line=lines_before + before.count("\n") + 1,
        byte_offset=offset - len(pending) + position,
        data=bytes(exc.object[exc.start : exc.end]),
    )


def invalid_bytes_reason(path: Path, encoding: str, column: str | None = None) -> str:
    """Say where ``path`` stops being ``encoding`` and which ``encoding:`` to try instead."""
    found = find_invalid_bytes(path, encoding)
    declared = codec_name(encoding)
    where = f"line {found.line} (byte {found.byte_offset})" if found else "the file"
    if column:
        where += f", column '{column}',"
    shown = f" (bytes {found.data.hex(' ')})" if found else ""
    others = [e for e in SUGGESTED_ENCODINGS if codec_name(e) != declared][:2]
    suggestion = " or ".join(f"'encoding: {e}'" for e in others)
    return (
        f"cannot read CSV {path}: {where} is not valid {encoding}{shown}; "
        f"set the file's encoding in the step's config, e.g. {suggestion}"
    )
