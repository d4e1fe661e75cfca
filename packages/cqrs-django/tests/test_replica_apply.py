"""Replica apply rules through the public API: cqrs_save / cqrs_delete and the manager."""

from __future__ import annotations

import datetime
import decimal
import logging
import uuid

import pytest
from cqrs_replica_models import AuthorRef, Item, ProductRef, RawEvents, VoucherRef
from replica_support import at, data

from dj_cqrs.managers import ReplicaManager
from dj_cqrs.metas import ReplicaMeta
from dj_cqrs.mixins import RawReplicaMixin, ReplicaMixin
from dj_cqrs.models import Tombstone
from dj_cqrs.registries import ReplicaRegistry
from dj_cqrs.replica.errors import raising_errors
from dj_cqrs.replica.manager import Skipped
from dj_cqrs.replica.mapping import BadData

pytestmark = pytest.mark.django_db


def item(pk: int = 1) -> Item:
    return Item.objects.get(pk=pk)


def save(pk: int, revision: int, seconds: float, sync: bool = False, **fields: object):  # type: ignore[no-untyped-def]
    fields.setdefault("name", f"r{revision}")
    return Item.cqrs_save(data(pk, revision, seconds, **fields), sync=sync)


def delete(pk: int, revision: int | None, seconds: float | None) -> bool:
    payload: dict[str, object] = {"id": pk}
    if revision is not None:
        payload["cqrs_revision"] = revision
    if seconds is not None:
        payload["cqrs_updated"] = str(at(seconds))
    return Item.cqrs_delete(payload)


# -- revisions --------------------------------------------------------------------------------


def test_create_then_next_revision_updates() -> None:
    created = save(1, 0, 0)
    assert isinstance(created, Item)
    assert (item().name, item().cqrs_revision, item().cqrs_updated) == ("r0", 0, at(0))
    save(1, 1, 1)
    assert (item().name, item().cqrs_revision, item().cqrs_updated) == ("r1", 1, at(1))


def test_duplicate_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    save(1, 0, 0)
    save(1, 1, 1)
    with caplog.at_level(logging.INFO, "django-cqrs"):
        result = save(1, 1, 1, name="changed but same revision")
    assert result == item()
    assert item().name == "r1"
    assert "duplicate" in caplog.text


def test_out_of_order_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    save(1, 0, 0)
    save(1, 2, 2)
    with caplog.at_level(logging.INFO, "django-cqrs"):
        save(1, 1, 1)
    assert (item().name, item().cqrs_revision) == ("r2", 2)
    assert "Wrong CQRS sync order" in caplog.text


def test_gap_is_applied_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    save(1, 0, 0)
    with caplog.at_level(logging.WARNING, "django-cqrs"):
        save(1, 5, 5)
    assert (item().name, item().cqrs_revision) == ("r5", 5)
    assert "Lost or filtered out 4 CQRS packages" in caplog.text


def test_sync_downgrade_is_applied_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    save(1, 0, 0)
    save(1, 3, 3)
    with caplog.at_level(logging.WARNING, "django-cqrs"):
        save(1, 1, 1, sync=True, name="repaired")
    assert (item().name, item().cqrs_revision) == ("repaired", 1)
    assert "downgrade on sync" in caplog.text


def test_sync_with_the_same_revision_is_applied() -> None:
    save(1, 2, 2)
    save(1, 2, 2, sync=True, name="resynced")
    assert item().name == "resynced"


def test_first_event_may_have_any_revision() -> None:
    save(1, 4, 4)
    assert item().cqrs_revision == 4


# -- deletes and tombstones -------------------------------------------------------------------


def test_delete_removes_the_row_and_leaves_a_tombstone() -> None:
    save(1, 0, 0)
    save(1, 1, 1)
    assert delete(1, 2, 10) is True
    assert not Item.objects.filter(pk=1).exists()
    tomb = Tombstone.objects.get(cqrs_id="item", instance_pk="1")
    assert (tomb.cqrs_revision, tomb.cqrs_updated) == (2, at(10))


@pytest.mark.parametrize("sync", [False, True])
def test_stale_save_or_sync_cannot_resurrect_a_deleted_row(sync: bool) -> None:
    save(1, 0, 0)
    delete(1, 2, 10)  # revision 1 was never received; it arrives late (or as a retry)
    result = save(1, 1, 5, sync=sync)
    assert isinstance(result, Skipped) and result
    assert not Item.objects.filter(pk=1).exists()


def test_delete_before_create_keeps_the_row_away() -> None:
    assert delete(1, 1, 10) is True  # nothing to delete, tombstone written
    save(1, 0, 0)  # the create arrives after its delete
    assert not Item.objects.filter(pk=1).exists()


def test_row_recreated_on_master_replicates_again() -> None:
    save(1, 0, 0)
    save(1, 1, 1)
    delete(1, 2, 10)
    save(1, 0, 20, name="second life")
    assert (item().name, item().cqrs_revision) == ("second life", 0)
    save(1, 1, 21, name="second life, updated")
    assert item().name == "second life, updated"


def test_late_event_of_a_previous_life_does_not_overwrite_the_new_row() -> None:
    save(1, 0, 0)
    delete(1, 4, 10)  # revisions 1..3 still in flight
    save(1, 0, 20, name="second life")
    save(1, 3, 5, name="old life")  # higher revision but older than the delete
    assert (item().name, item().cqrs_revision) == ("second life", 0)


def test_late_delete_of_a_previous_life_keeps_the_new_row() -> None:
    save(1, 0, 20, name="second life")
    delete(1, 3, 10)  # the first life's delete, retried late
    assert item().name == "second life"
    assert Tombstone.objects.filter(cqrs_id="item", instance_pk="1").exists()


def test_newer_delete_replaces_the_tombstone_older_does_not() -> None:
    delete(1, 3, 10)
    delete(1, 1, 30)
    delete(1, 9, 20)  # older than the tombstone: ignored
    tomb = Tombstone.objects.get(cqrs_id="item", instance_pk="1")
    assert (tomb.cqrs_revision, tomb.cqrs_updated) == (1, at(30))


def test_delete_without_master_time_uses_replica_time() -> None:
    before = datetime.datetime.now(datetime.timezone.utc)
    save(1, 0, 0)
    delete(1, 1, None)
    tomb = Tombstone.objects.get(cqrs_id="item", instance_pk="1")
    assert tomb.cqrs_updated >= before
    assert isinstance(save(1, 0, 0), Skipped)


def test_tombstone_keys_are_normalised_primary_keys() -> None:
    key = uuid.UUID("3b241101-e2bb-4255-8caf-4136c566a962")
    VoucherRef.cqrs_save(data(str(key), 0, 0, code="V", value=5))
    VoucherRef.cqrs_delete({"id": str(key).upper(), "cqrs_revision": 1, "cqrs_updated": str(at(9))})
    assert not VoucherRef.objects.exists()
    assert Tombstone.objects.get(cqrs_id="voucher").instance_pk == str(key)
    assert isinstance(VoucherRef.cqrs_save(data(str(key), 0, 0, code="V", value=5)), Skipped)


def test_tombstones_can_be_purged() -> None:
    delete(1, 1, 1)
    delete(2, 1, 1)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
    assert Tombstone.objects.purge(before=future) == 2
    assert Tombstone.objects.purge(before=future) == 0


# -- mapping, types, custom serialization, meta -----------------------------------------------


def product_data(revision: int, seconds: float, **fields: object) -> dict[str, object]:
    values: dict[str, object] = {
        "name": 'Café "Grüße" a/b',
        "quantity": 7,
        "price": 1234.5,
        "release_date": "2026-12-24",
        "published_at": "2026-11-27 10:30:00.123456+01:00",
        "is_active": True,
        "note": None,
        "external_uuid": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "extra_master_field": "ignored",
    }
    values.update(fields)
    return data(1, revision, seconds, **values)


def test_mapping_renames_fields_and_converts_types() -> None:
    ProductRef.cqrs_save(product_data(0, 0))
    product = ProductRef.objects.get(pk=1)
    assert product.title == 'Café "Grüße" a/b'
    assert product.stock == 7
    assert product.price == decimal.Decimal("1234.50")
    assert product.release_date == datetime.date(2026, 12, 24)
    assert product.published_at == datetime.datetime(
        2026, 11, 27, 9, 30, 0, 123456, tzinfo=datetime.timezone.utc
    )
    assert product.external_uuid == uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")


def test_mapping_applies_to_previous_data() -> None:
    ProductRef.cqrs_save(product_data(0, 0))
    ProductRef.cqrs_save(
        product_data(1, 1, name="v2"), previous_data={"name": "v1", "release_date": None}
    )
    assert ProductRef.objects.get(pk=1).previous_title == "v1"


def test_mapping_with_a_missing_master_key_is_bad_data() -> None:
    values = product_data(0, 0)
    del values["quantity"]
    with pytest.raises(BadData, match="quantity"), raising_errors():
        ProductRef.cqrs_save(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"id": 1, "cqrs_updated": str(at(0)), "name": "x"}, "cqrs_revision"),
        ({"id": 1, "cqrs_revision": 0, "name": "x"}, "cqrs_updated"),
        ({"id": 1, "cqrs_revision": "zero", "cqrs_updated": str(at(0)), "name": "x"}, "integer"),
        ({"id": 1, "cqrs_revision": 0, "cqrs_updated": "yesterday", "name": "x"}, "datetime"),
        ({"id": "one", "cqrs_revision": 0, "cqrs_updated": str(at(0)), "name": "x"}, "id"),
        ({"id": 1, "cqrs_revision": 0, "cqrs_updated": str(at(0))}, "name"),
    ],
)
def test_bad_data_is_reported(values: dict[str, object], message: str) -> None:
    with pytest.raises(BadData, match=message), raising_errors():  # as the consumer sees it
        Item.cqrs_save(values)
    assert not Item.objects.exists()


def test_custom_serialization_and_meta() -> None:
    values = data(7, 0, 0, name="Ann", email="ann@example.com", birth_date="1990-02-03")
    AuthorRef.cqrs_save(values, meta={"trace": "abc"})
    author = AuthorRef.objects.get(pk=7)
    assert author.display == "Ann <ann@example.com>"
    assert author.birth_date == datetime.date(1990, 2, 3)
    assert author.last_meta == {"trace": "abc"}
    AuthorRef.cqrs_save(data(7, 1, 1, name="Ann B", email=""), meta={"trace": "def"})
    author.refresh_from_db()
    assert (author.display, author.last_meta, author.cqrs_revision) == (
        "Ann B <>",
        {"trace": "def"},
        1,
    )


def test_meta_reaches_cqrs_create_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def create(cls, sync, mapped_data, previous_data=None, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(kwargs)
        return cls._default_manager.create(**mapped_data)

    monkeypatch.setattr(Item, "cqrs_create", classmethod(create))
    Item.cqrs_save(data(1, 0, 0, name="x"), meta={"m": 1})
    assert seen == {}


# -- classes, registration, managers ----------------------------------------------------------


def test_models_are_registered_and_use_the_replica_manager() -> None:
    assert ReplicaRegistry.get_model_by_cqrs_id("item") is Item
    assert ReplicaRegistry.get_model_by_cqrs_id("raw_event") is RawEvents
    assert isinstance(Item.cqrs, ReplicaManager)
    assert type(Item).__mro__[0] is ReplicaMeta or isinstance(Item, ReplicaMeta)
    assert issubclass(RawEvents, RawReplicaMixin) and not issubclass(RawEvents, ReplicaMixin)


def test_manager_methods_are_public() -> None:
    created = Item.cqrs.create_instance(
        {"id": 3, "name": "a", "cqrs_revision": 0, "cqrs_updated": at(0)}
    )
    updated = Item.cqrs.update_instance(
        created, {"id": 3, "name": "b", "cqrs_revision": 1, "cqrs_updated": at(1)}
    )
    assert item(3).name == "b" and updated.pk == 3
    assert Item.cqrs.save_instance(data(3, 2, 2, name="c")).name == "c"
    assert Item.cqrs.delete_instance({"id": 3, "cqrs_revision": 3, "cqrs_updated": str(at(3))})
    assert not Item.objects.filter(pk=3).exists()


def test_no_db_operations_must_be_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Item, "CQRS_NO_DB_OPERATIONS", True)
    with pytest.raises(NotImplementedError, match="override cqrs_save"):
        Item.cqrs_save(data(1, 0, 0, name="x"))
    with pytest.raises(NotImplementedError, match="override cqrs_delete"):
        Item.cqrs_delete({"id": 1})


def test_default_retry_policy_reads_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_MAX_RETRIES": 2, "CQRS_RETRY_DELAY": 7}}
    assert Item.should_retry_cqrs(1) is True
    assert Item.should_retry_cqrs(2) is False
    assert Item.get_cqrs_retry_delay(1) == 7
    assert Item.should_retry_cqrs(0, BadData("never fits")) is False
    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_MAX_RETRIES": None}}
    assert Item.should_retry_cqrs(10**6) is True
