"""The replica's reading shortcuts give what the long way gives (issue 17).

`mapping.fit` skips `to_python` for a value already of the type a stock field stores, the bulk
path hands its database connection down instead of asking the router per field, and `_key_in`
passes ready keys to the driver as they are. None of that may change a value, let a bad one
through, or refuse a good one.
"""

from __future__ import annotations

from typing import Any

import pytest
from cqrs_replica_models import Item, TypedRef
from django.db import connection, models
from django.db.models.expressions import RawSQL

from dj_cqrs.replica import decide
from dj_cqrs.replica.batch import _key_in
from dj_cqrs.replica.mapping import BadData, fit
from dj_cqrs.replica.upsert import array_type

pytestmark = pytest.mark.django_db

STAMP = "2026-01-01 00:00:00+00:00"


def _long_way(field: Any, value: Any) -> Any:
    """`field.to_python`, as `fit` called it for every value before the shortcut."""
    return field.to_python(value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("char", "abc"),
        ("text", "a long text"),
        ("slug", "a-slug"),
        ("small", -5),
        ("integer", 7),
        ("big", 2**40),
        ("positive", 3),
        ("ratio", 1.5),
        ("ratio", float("inf")),
        ("flag", True),
        ("flag", False),
        ("id", 12),
    ],
)
def test_a_value_of_the_stored_type_comes_back_unchanged(name: str, value: Any) -> None:
    field = TypedRef._meta.get_field(name)
    fitted = fit(field, value, name, TypedRef)
    assert fitted is value
    assert fitted == _long_way(field, value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("integer", True, 1),  # a bool is not an int here: converted as before
        ("integer", "5", 5),
        ("integer", 3.0, 3),
        ("char", 5, "5"),
        ("ratio", 2, 2.0),
    ],
)
def test_other_types_are_still_converted(name: str, value: Any, expected: Any) -> None:
    fitted = fit(TypedRef._meta.get_field(name), value, name, TypedRef)
    assert fitted == expected
    assert type(fitted) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("char", "x" * 31, "31 characters, the column holds 30"),
        ("small", 2**20, "out of the column's range"),
        ("positive", -1, "out of the column's range"),
        ("integer", 2**40, "out of the column's range"),
    ],
)
def test_a_ready_value_that_does_not_fit_is_still_refused(
    name: str, value: Any, reason: str
) -> None:
    with pytest.raises(BadData, match=reason):
        fit(TypedRef._meta.get_field(name), value, name, TypedRef)
    with pytest.raises(BadData, match=reason):  # the same with the caller's connection
        fit(TypedRef._meta.get_field(name), value, name, TypedRef, connection)


def test_a_subclass_of_a_stock_field_takes_the_long_way() -> None:
    calls = []

    class Upper(models.CharField):  # type: ignore[type-arg]
        def to_python(self, value: Any) -> Any:
            calls.append(value)
            return str(value).upper()

    field = Upper(max_length=10)
    field.set_attributes_from_name("upper")
    assert fit(field, "abc", "upper", TypedRef) == "ABC"
    assert calls == ["abc"]


def test_read_save_gives_the_same_with_and_without_the_connection() -> None:
    data = {"id": "7", "name": "seven", "cqrs_revision": 2, "cqrs_updated": STAMP}
    assert decide.read_save(Item, data, connection) == decide.read_save(Item, data)
    with pytest.raises(BadData, match="the column holds 100"):
        decide.read_save(Item, {**data, "name": "x" * 101}, connection)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the ANY(array) form")
def test_key_in_sends_the_same_values_as_the_field_would() -> None:
    keys: list[Any] = [1, 2, 3]
    condition = _key_in(Item, "default", "pk", keys)
    assert isinstance(condition, RawSQL)
    field = Item._meta.pk
    assert field is not None
    prepared = [field.get_db_prep_value(key, connection) for key in keys]
    (param,) = condition.params
    with connection.cursor() as cursor:  # PostgreSQL reads the parameter as those values
        cursor.execute(f"SELECT %s::{array_type(field, connection)}", [param])
        assert cursor.fetchone()[0] == prepared
    assert [obj.pk for obj in Item.objects.filter(condition)] == []
