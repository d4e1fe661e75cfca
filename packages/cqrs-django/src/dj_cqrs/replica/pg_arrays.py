"""PostgreSQL array parameters written as one array literal (`'{1,2,3}'`) instead of a list.

psycopg dumps a Python list element by element, each through a type lookup and a regular
expression that decides its quoting: for a batch of 500 events of ten columns that is 5,000
checks per statement, a visible share of a consumer's time. For the plain types below the
literal is built here with string methods; any other value (a float, a time, a dict, a
non-finite Decimal, text with a NUL character) keeps the list, and psycopg's own dumping.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable, Sequence
from typing import Any


def _text(value: str) -> str:
    # Always quoted: an unquoted NULL (or empty string) would mean something else.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _decimal(value: decimal.Decimal) -> str:
    if not value.is_finite():
        raise _Unsupported
    return str(value)


def _quoted(value: Any) -> str:
    return f'"{value.isoformat()}"'


class _Unsupported(Exception):
    """A value this module does not write: the caller passes the list as it is."""


_FORMATS: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,
    bool: lambda value: "t" if value else "f",
    str: _text,
    decimal.Decimal: _decimal,
    datetime.date: _quoted,
    datetime.datetime: _quoted,
    uuid.UUID: str,
}
"""Exact types only: a subclass (an IntEnum, a str subclass) may print itself differently."""

try:  # what Django's psycopg backend makes of integer keys (`get_db_prep_value`)
    from psycopg.types.numeric import Int2, Int4, Int8

    _FORMATS.update(dict.fromkeys((Int2, Int4, Int8), int.__repr__))
except ImportError:  # pragma: no cover - psycopg 2 passes plain ints
    pass


def array_param(values: Sequence[Any]) -> Any:
    """`values` as one PostgreSQL array literal, or the list itself when a value needs psycopg.

    The literal goes in place of the list, before the same `::type[]` cast.
    """
    formats = _FORMATS
    try:
        items = ["NULL" if value is None else formats[type(value)](value) for value in values]
    except (KeyError, _Unsupported):
        return list(values)
    literal = "{" + ",".join(items) + "}"
    if "\x00" in literal:  # PostgreSQL refuses it either way; psycopg says so clearly
        return list(values)
    return literal
