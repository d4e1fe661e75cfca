"""Array parameters written as one literal: PostgreSQL must read back exactly the values."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from typing import Any

import pytest
from django.db import connection

from dj_cqrs.replica.pg_arrays import array_param

UTC = datetime.timezone.utc
HOSTILE_TEXT = [
    "",
    "NULL",
    "null",
    " padded ",
    'a "quoted" word',
    'back\\slash \\\\ and \\"',
    "{braces}, commas, and ,{",
    "it's",
    "tab\tnew\nline\r",
    "Café Grüße ☃ 😀 <&>",
    "x" * 5000,
    None,
]
COLUMNS: list[tuple[str, list[Any]]] = [
    ("text[]", HOSTILE_TEXT),
    ("varchar[]", HOSTILE_TEXT),
    ("integer[]", [0, -1, 2**31 - 1, None]),
    ("bigint[]", [2**63 - 1, -(2**63)]),
    ("boolean[]", [True, False, None]),
    ("numeric[]", [decimal.Decimal("0.10"), decimal.Decimal("-1E+3"), decimal.Decimal("1e-20")]),
    ("date[]", [datetime.date(1, 1, 1), datetime.date(9999, 12, 31)]),
    (
        "timestamptz[]",
        [
            datetime.datetime(2026, 11, 27, 9, 30, 0, 123456, tzinfo=UTC),
            datetime.datetime(
                2026, 6, 1, 2, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-7))
            ),
        ],
    ),
    ("uuid[]", [uuid.UUID(int=0), uuid.uuid4()]),
    ("text[]", []),
]

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL array parameters"
)


@on_postgresql
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("cast", "values"), COLUMNS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(COLUMNS)]
)
def test_postgresql_reads_back_the_values(cast: str, values: list[Any]) -> None:
    param = array_param(values)
    assert isinstance(param, str), "these types are written as a literal"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{cast}", [param])
        (read,) = cursor.fetchone()
    expected = [
        value.astimezone(UTC) if isinstance(value, datetime.datetime) else value for value in values
    ]
    assert read == expected


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "odd",
    [
        1.5,  # floats: 'inf', 'nan' and repr rules are psycopg's business
        decimal.Decimal("NaN"),
        datetime.time(12, 0),
        {"a": 1},
        Colour.RED,  # a subclass may print itself differently
        "nul \x00 inside",
    ],
    ids=["float", "decimal-nan", "time", "dict", "int-enum", "nul"],
)
def test_other_values_keep_the_list(odd: Any) -> None:
    values = [1, odd, None]
    param = array_param(values)
    assert param == values
    assert param is not values, "a new list: the caller's stays its own"
