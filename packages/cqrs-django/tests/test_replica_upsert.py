"""The bulk upsert of the batch apply: same rows as Django's bulk_create, on every database."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import django
import pytest
from cqrs_testproject.replica_app.models import Item, ProductRef, StampedRef, VoucherRef
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Value
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dj_cqrs.replica.tombstone import Tombstone
from dj_cqrs.replica.upsert import array_type, only_unique_key, upsert

pytestmark = pytest.mark.django_db(transaction=True)

ON_POSTGRESQL = connection.vendor == "postgresql"
PRODUCT_FIELDS = [f.name for f in ProductRef._meta.concrete_fields if not f.primary_key]


def product(pk: int, **overrides: object) -> ProductRef:
    values: dict[str, object] = {
        "id": pk,
        "title": f"title {pk}",
        "stock": pk * 10,
        "price": Decimal("12.34"),
        "release_date": datetime.date(2026, 1, pk % 28 + 1),
        "published_at": datetime.datetime(
            2026, 2, 3, 4, 5, 6, 789000, tzinfo=datetime.timezone.utc
        ),
        "is_active": pk % 2 == 0,
        "note": None,
        "external_uuid": uuid.UUID(int=pk),
        "previous_title": "old" if pk % 3 else None,
        "cqrs_revision": 0,
        "cqrs_updated": timezone.now(),
    }
    values.update(overrides)
    return ProductRef(**values)


def stored(model: type[models.Model], fields: list[str]) -> dict[object, tuple[object, ...]]:
    return {row[0]: row[1:] for row in model.objects.values_list("pk", *fields)}


def as_tuple(obj: models.Model, fields: list[str]) -> tuple[object, ...]:
    return tuple(getattr(obj, name) for name in fields)


def test_inserts_new_rows_and_updates_existing_ones_field_for_field() -> None:
    first = [product(pk) for pk in (1, 2, 3)]
    upsert(ProductRef, "default", first, ["id"], PRODUCT_FIELDS)
    second = [
        product(
            2, title="renamed", stock=0, price=Decimal("0.10"), note="now set", cqrs_revision=1
        ),
        product(3, is_active=True, release_date=None, published_at=None, cqrs_revision=1),
        product(4),
    ]
    with CaptureQueriesContext(connection) as queries:
        upsert(ProductRef, "default", second, ["id"], PRODUCT_FIELDS)

    expected = {obj.pk: as_tuple(obj, PRODUCT_FIELDS) for obj in [first[0], *second]}
    assert stored(ProductRef, PRODUCT_FIELDS) == expected
    if ON_POSTGRESQL:  # one short statement with a column of values per field
        assert len(queries) == 1
        assert "unnest(" in queries[0]["sql"]


def test_uuid_primary_keys() -> None:
    keys = [uuid.UUID(int=n) for n in (7, 8)]
    upsert(
        VoucherRef,
        "default",
        [
            VoucherRef(id=k, code="a", value=1, cqrs_revision=0, cqrs_updated=timezone.now())
            for k in keys
        ],
        ["id"],
        ["code", "value"],
    )
    upsert(
        VoucherRef,
        "default",
        [VoucherRef(id=keys[1], code="b", value=2, cqrs_revision=1, cqrs_updated=timezone.now())],
        ["id"],
        ["code", "value"],
    )
    assert stored(VoucherRef, ["code", "value"]) == {keys[0]: ("a", 1), keys[1]: ("b", 2)}


def test_generated_primary_keys_and_other_unique_columns() -> None:
    def tombstone(pk: str, revision: int) -> Tombstone:
        now = timezone.now()
        return Tombstone(
            cqrs_id="stamped",
            instance_pk=pk,
            cqrs_revision=revision,
            cqrs_updated=now,
            deleted_at=now,
        )

    fields = ["cqrs_revision", "cqrs_updated", "deleted_at"]
    upsert(
        Tombstone,
        "default",
        [tombstone("1", 3), tombstone("2", 1)],
        ["cqrs_id", "instance_pk"],
        fields,
    )
    upsert(Tombstone, "default", [tombstone("2", 5)], ["cqrs_id", "instance_pk"], fields)
    assert dict(Tombstone.objects.values_list("instance_pk", "cqrs_revision")) == {"1": 3, "2": 5}


def test_a_new_row_clashing_on_another_unique_column_fails_and_changes_nothing() -> None:
    """MySQL's ON DUPLICATE KEY UPDATE fires on any unique key: pk 5 with row 1's `code` once
    overwrote row 1 (and row 5 was never created). Every database must refuse it instead."""
    first = Item(id=1, name="first", code="same", cqrs_revision=0, cqrs_updated=timezone.now())
    upsert(Item, "default", [first], ["id"], ["name", "code", "cqrs_revision", "cqrs_updated"])
    clash = Item(id=5, name="clash", code="same", cqrs_revision=3, cqrs_updated=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        upsert(Item, "default", [clash], ["id"], ["name", "code", "cqrs_revision", "cqrs_updated"])
    assert list(Item.objects.values_list("id", "name", "cqrs_revision")) == [(1, "first", 0)]


def test_only_unique_key_sees_every_unique_constraint() -> None:
    assert only_unique_key(ProductRef, ["id"])
    assert not only_unique_key(Item, ["id"])  # `code` is unique too
    assert only_unique_key(Tombstone, ["cqrs_id", "instance_pk"])  # plus its auto-increment id
    assert not only_unique_key(Tombstone, ["id"])


@pytest.mark.skipif(django.VERSION < (5, 0), reason="db_default needs Django 5.0")
def test_db_default_columns_are_left_to_the_database_on_insert() -> None:
    kept = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    StampedRef.objects.create(
        id=1, name="old", stamped_at=kept, cqrs_revision=0, cqrs_updated=timezone.now()
    )
    existing = StampedRef.objects.get(id=1)
    existing.name = "changed"
    new = StampedRef(id=2, name="new", cqrs_revision=0, cqrs_updated=timezone.now())
    fields = ["name", "stamped_at", "cqrs_revision", "cqrs_updated"]

    upsert(StampedRef, "default", [existing, new], ["id"], fields)

    rows = {row.id: row for row in StampedRef.objects.all()}
    assert rows[1].name == "changed"
    assert rows[1].stamped_at == kept  # the stored value was written back as it was
    assert rows[2].name == "new"
    assert rows[2].stamped_at is not None  # the database's Now(), not NULL


def test_expression_values_go_through_django() -> None:
    obj = product(5, stock=Value(99))
    with CaptureQueriesContext(connection) as queries:
        upsert(ProductRef, "default", [obj], ["id"], PRODUCT_FIELDS)
    assert ProductRef.objects.get(id=5).stock == 99
    assert not any("unnest(" in query["sql"] for query in queries)


@pytest.mark.skipif(not ON_POSTGRESQL, reason="array types are PostgreSQL's")
def test_array_types_of_fields() -> None:
    from django.contrib.postgres.fields import ArrayField

    # Unbounded: a cast to varchar(200) would cut longer values instead of rejecting them.
    assert array_type(ProductRef._meta.get_field("title"), connection) == "varchar[]"
    assert array_type(ProductRef._meta.get_field("price"), connection) == "numeric[]"
    assert array_type(ArrayField(models.IntegerField()), connection) is None
