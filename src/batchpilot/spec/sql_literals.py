"""Turning template values into SQL text that cannot change a statement's meaning.

A rendered SQL template holds a placeholder where each ``{{ expression }}``
stood. :func:`locate_placeholders` lexes that text the way PostgreSQL, SQLite
and DuckDB do (strings, quoted identifiers, comments, dollar quotes) to learn
where each placeholder sits, and :func:`sql_for_value` writes the value in the
one form that is safe there: a quoted literal in code, escaped characters
inside a string, a harmless line inside a comment.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import math
import re
from dataclasses import dataclass
from typing import Any

#: characters that make an expression part of a neighbouring word or literal
_GLUE = re.compile(r"[\w$'\"`]")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


class SqlValueError(ValueError):
    """A value cannot be written safely where its expression stands; the message says why."""


@dataclass(frozen=True)
class SqlIdentifier:
    """A value marked ``| identifier``: written as a quoted SQL name (``"my table"``)."""

    name: str


@dataclass(frozen=True)
class RawSql:
    """A value marked ``| unsafe_raw_sql``: written verbatim, as trusted SQL text."""

    text: str


class Place(enum.Enum):
    """Where a placeholder sits in the SQL text."""

    CODE = "code"
    STRING = "a string literal"
    ESCAPE_STRING = "an escape string (E'...' or U&'...')"
    QUOTED_NAME = 'a quoted name ("...")'
    BACKTICK_NAME = "a backtick-quoted name"
    LINE_COMMENT = "a -- comment"
    BLOCK_COMMENT = "a /* */ comment"


@dataclass(frozen=True)
class Slot:
    """One placeholder found in the text: its span, its value's index and its place."""

    start: int
    end: int
    index: int
    place: Place
    dollar_tags: tuple[str, ...]
    before: str
    after: str


def locate_placeholders(sql: str, placeholder: re.Pattern[str]) -> list[Slot]:
    """Every match of ``placeholder`` in ``sql`` with the lexical place it sits in.

    ``placeholder`` must capture the value's index as its first group.
    """
    lexer = _Lexer(sql)
    slots: list[Slot] = []
    while lexer.position < len(sql):
        found = placeholder.match(sql, lexer.position)
        if found:
            start, end = found.span()
            slots.append(
                Slot(
                    start=start,
                    end=end,
                    index=int(found.group(1)),
                    place=lexer.place,
                    dollar_tags=tuple(lexer.dollar_tags),
                    before=sql[start - 1] if start else "",
                    after=sql[end] if end < len(sql) else "",
                )
            )
            lexer.position = end
            continue
        lexer.step()
    return slots


class _Lexer:
    """A character-level SQL lexer that tracks only what decides a placeholder's place."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.position = 0
        self.place = Place.CODE
        self.dollar_tags: list[str] = []
        self._comment_depth = 0

    def step(self) -> None:
        sql, i = self.sql, self.position
        if self.dollar_tags and sql[i] == "$" and self._close_dollar_quote():
            return
        handler = {
            Place.CODE: self._in_code,
            Place.STRING: lambda: self._in_quotes("'", backslash_escapes=False),
            Place.ESCAPE_STRING: lambda: self._in_quotes("'", backslash_escapes=True),
            Place.QUOTED_NAME: lambda: self._in_quotes('"', backslash_escapes=False),
            Place.BACKTICK_NAME: lambda: self._in_quotes("`", backslash_escapes=False),
            Place.LINE_COMMENT: self._in_line_comment,
            Place.BLOCK_COMMENT: self._in_block_comment,
        }[self.place]
        handler()

    def _close_dollar_quote(self) -> bool:
        # the server ends a dollar quote at its tag whatever the body's own lexing says
        for level, tag in enumerate(self.dollar_tags):
            closing = f"${tag}$"
            if self.sql.startswith(closing, self.position):
                del self.dollar_tags[level:]
                self.place = Place.CODE
                self.position += len(closing)
                return True
        return False

    def _in_code(self) -> None:
        sql, i = self.sql, self.position
        char = sql[i]
        self.position += 1
        if char == "'":
            self.place = Place.ESCAPE_STRING if _escape_prefix(sql, i) else Place.STRING
        elif char == '"':
            self.place = Place.QUOTED_NAME
        elif char == "`":
            self.place = Place.BACKTICK_NAME
        elif sql.startswith("--", i):
            self.place = Place.LINE_COMMENT
            self.position += 1
        elif sql.startswith("/*", i):
            self.place = Place.BLOCK_COMMENT
            self._comment_depth = 1
            self.position += 1
        elif char == "$" and not (i and re.match(r"[\w$]", sql[i - 1])):
            tag = _DOLLAR_TAG.match(sql, i)
            if tag:
                self.dollar_tags.append(tag.group(1) or "")
                self.position = tag.end()

    def _in_quotes(self, quote: str, *, backslash_escapes: bool) -> None:
        sql, i = self.sql, self.position
        escaped = backslash_escapes and sql[i] == "\\"
        if escaped or sql.startswith(quote * 2, i):
            self.position += 2
        else:
            self.position += 1
            if sql[i] == quote:
                self.place = Place.CODE

    def _in_line_comment(self) -> None:
        if self.sql[self.position] in "\r\n":
            self.place = Place.CODE
        self.position += 1

    def _in_block_comment(self) -> None:
        sql, i = self.sql, self.position
        if sql.startswith("/*", i):
            self._comment_depth += 1
            self.position += 2
        elif sql.startswith("*/", i):
            self._comment_depth -= 1
            self.position += 2
            if not self._comment_depth:
                self.place = Place.CODE
        else:
            self.position += 1


def _escape_prefix(sql: str, quote_at: int) -> bool:
    """True if the quote opens ``E'...'`` or ``U&'...'`` (backslash escapes apply)."""
    head = sql[max(0, quote_at - 3) : quote_at]
    for prefix in ("E", "U&"):
        if head.upper().endswith(prefix):
            before = quote_at - len(prefix) - 1
            if before < 0 or not re.match(r"[\w$]", sql[before]):
                return True
    return False


def sql_for_value(value: Any, slot: Slot, text_of: Any, *, backslash_is_plain: bool) -> str:
    """The SQL text for ``value`` at ``slot``; raises :class:`SqlValueError` if there is none.

    ``text_of`` turns a value into its plain text (with the size bound applied).
    ``backslash_is_plain``: the engine reads ``\\`` inside quotes as itself (DuckDB,
    PostgreSQL, SQLite) rather than as an escape (MySQL's default), for every database
    the statement may run on.
    """
    if isinstance(value, RawSql):
        written = value.text
    else:
        written = _escaped(value, slot, text_of, backslash_is_plain=backslash_is_plain)
    for tag in slot.dollar_tags:
        if f"${tag}$" in written:
            raise SqlValueError(
                f"the value holds ${tag}$, which would end the dollar-quoted text it is in"
            )
    return written


def _escaped(value: Any, slot: Slot, text_of: Any, *, backslash_is_plain: bool) -> str:
    place = slot.place
    if place is Place.CODE:
        if _GLUE.match(slot.before) or _GLUE.match(slot.after):
            raise SqlValueError(
                "the expression touches a word or a quote, so its quoted value would not "
                "stand alone; give it spaces, or build the whole name and mark it, "
                "e.g. {{ ('sales_' ~ ds_nodash) | identifier }}"
            )
        if isinstance(value, SqlIdentifier):
            return quote_identifier(value.name, backslash_is_plain=backslash_is_plain)
        return quote_literal(value, text_of, backslash_is_plain=backslash_is_plain)
    text = value.name if isinstance(value, SqlIdentifier) else text_of(value)
    if place is Place.LINE_COMMENT:
        return re.sub(r"[\r\n]", " ", text)
    if place is Place.BLOCK_COMMENT:
        return text.replace("*/", "* /").replace("/*", "/ *")
    if place is Place.ESCAPE_STRING:
        raise SqlValueError(
            "an expression inside an escape string (E'...' or U&'...') cannot be written "
            "safely; remove the quotes and let the expression render as a literal"
        )
    _check_text(text, backslash_is_plain=backslash_is_plain)
    quote = {Place.STRING: "'", Place.QUOTED_NAME: '"', Place.BACKTICK_NAME: "`"}[place]
    return text.replace(quote, quote * 2)


def quote_literal(value: Any, text_of: Any, *, backslash_is_plain: bool) -> str:
    """``value`` as a SQL literal: NULL, TRUE/FALSE, a number, ``'text'`` (quotes doubled),
    or, for a list, a parenthesized list of literals for ``IN`` (``(NULL)`` when empty)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | decimal.Decimal):
        if not math.isfinite(value):
            raise SqlValueError(f"the number {value} has no SQL literal; pass it as text")
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, list | tuple):
        if any(isinstance(item, list | tuple | dict) for item in value):
            raise SqlValueError("a nested list has no SQL literal; use a flat list of values")
        items = [
            quote_literal(item, text_of, backslash_is_plain=backslash_is_plain) for item in value
        ]
        return f"({', '.join(items) or 'NULL'})"
    if isinstance(value, dict):
        raise SqlValueError("a mapping has no SQL literal; use one of its values")
    text = value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else text_of(value)
    _check_text(text, backslash_is_plain=backslash_is_plain)
    return "'" + text.replace("'", "''") + "'"


def quote_identifier(name: str, *, backslash_is_plain: bool) -> str:
    """``name`` as a double-quoted SQL identifier, inner double quotes doubled."""
    if not isinstance(name, str) or not name:
        raise SqlValueError("an identifier must be a non-empty text")
    _check_text(name, backslash_is_plain=backslash_is_plain)
    return '"' + name.replace('"', '""') + '"'


def _check_text(text: str, *, backslash_is_plain: bool) -> None:
    if "\x00" in text:
        raise SqlValueError("the value holds a NUL character, which no SQL text may contain")
    if "\\" in text and not backslash_is_plain:
        raise SqlValueError(
            "the value holds a backslash, which some databases (MySQL) read as an escape "
            "inside quotes; pass it as a bind parameter instead (:name in the SQL)"
        )
