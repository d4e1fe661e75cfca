"""The service's own suite, as it ran on django-cqrs 3.x (pytest, pytest-django, pytest-mock)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils.timezone import now
from legacy_project.master_app.admin import CustomerAdmin
from legacy_project.master_app.models import Customer, Node, Order, OrderLine, Warehouse
from legacy_project.master_app.serializers import OrderSerializer
from legacy_project.replica_app.models import CustomerRef, NodeRef, OrderRef, WarehouseFeed
from legacy_project.transport import RecordingTransport

from dj_cqrs.constants import (
    ALL_BASIC_FIELDS,
    DEFAULT_MASTER_AUTO_UPDATE_FIELDS,
    DEFAULT_MASTER_MESSAGE_TTL,
    DEFAULT_REPLICA_MAX_RETRIES,
    DEFAULT_REPLICA_RETRY_DELAY,
    SignalType,
)
from dj_cqrs.controller import producer
from dj_cqrs.controller.consumer import consume, route_signal_to_replica_model
from dj_cqrs.correlation import get_correlation_id
from dj_cqrs.dataclasses import TransportPayload
from dj_cqrs.registries import MasterRegistry, ReplicaRegistry
from dj_cqrs.signals import post_bulk_create, post_update
from dj_cqrs.transport import BaseTransport
from dj_cqrs.transport.mock import TransportMock
from dj_cqrs.utils import get_message_expiration_dt

PAYLOAD_KEYS = {
    "signal_type",
    "cqrs_id",
    "instance_data",
    "previous_data",
    "instance_pk",
    "correlation_id",
    "retries",
    "expires",
    "meta",
}


def last_payload(produce_mock):
    return produce_mock.call_args[0][0]


def payloads(produce_mock):
    return [call[0][0] for call in produce_mock.call_args_list]


def over_the_wire(payload):
    return TransportPayload.from_message(json.loads(json.dumps(payload.to_dict())))


def assert_expires_in(payload, seconds, before, after):
    # Whole seconds are enough: the wire format carries no fraction.
    assert before.replace(microsecond=0) + timedelta(seconds=seconds) <= payload.expires
    assert payload.expires <= after + timedelta(seconds=seconds)


def master_data(**fields):
    fields.setdefault("cqrs_revision", 0)
    fields.setdefault("cqrs_updated", str(now()))
    return fields


# Master side: what each change publishes


@pytest.mark.parametrize("model", (Customer, Warehouse, Order, Node))
@pytest.mark.parametrize("signal", (post_save, post_delete, post_bulk_create, post_update))
def test_signals_are_registered(model, signal):
    assert signal.has_listeners(model)


@pytest.mark.django_db(transaction=True)
def test_create_publishes_save(produce):
    before = now()
    customer = Customer.objects.create(name="Ann", joined=date(2026, 1, 2))
    after = now()

    assert produce.call_count == 1
    payload = last_payload(produce)
    assert payload.signal_type == SignalType.SAVE
    assert payload.cqrs_id == "customer"
    assert payload.pk == customer.pk
    assert payload.queue is None
    assert payload.retries == 0
    assert payload.instance_data == {
        "id": customer.pk,
        "name": "Ann",
        "email": None,
        "status": "active",
        "joined": "2026-01-02",
        "cqrs_revision": 0,
        "cqrs_updated": str(customer.cqrs_updated),
    }
    assert payload.previous_data == {"name": None, "status": None}
    assert payload.correlation_id == f"legacy:SAVE:customer:{customer.pk}"
    assert payload.meta == {"service": "legacy-master", "signal_type": "SAVE"}
    assert_expires_in(payload, 3600, before, after)


@pytest.mark.django_db(transaction=True)
def test_payload_to_dict_is_the_wire_body(produce):
    customer = Customer.objects.create(name="Ann")

    body = last_payload(produce).to_dict()
    assert set(body) == PAYLOAD_KEYS
    assert body["signal_type"] == "SAVE"
    assert body["instance_pk"] == customer.pk
    expires = datetime.fromisoformat(body["expires"])
    assert expires.microsecond == 0 and expires.utcoffset() == timedelta(0)
    assert json.loads(json.dumps(body)) == body


@pytest.mark.django_db(transaction=True)
def test_update_sends_previous_values_of_changed_tracked_fields(produce):
    customer = Customer.objects.create(name="Ann", email="ann@example.com")
    produce.reset_mock()

    customer.name = "Anna"
    customer.save()

    payload = last_payload(produce)
    assert payload.instance_data["name"] == "Anna"
    assert payload.instance_data["cqrs_revision"] == 1
    assert payload.previous_data == {"name": "Ann"}
    assert customer.get_tracked_fields_data() == {"name": "Ann"}

    customer.email = "anna@example.com"
    customer.save()
    assert last_payload(produce).previous_data == {}
    customer.refresh_from_db()
    assert customer.cqrs_revision == 2


@pytest.mark.django_db(transaction=True)
def test_all_fields_tracked_and_chosen_fields_sent(produce):
    warehouse = Warehouse.objects.create(code="W1", city="Oslo", capacity=10, internal_note="x")

    payload = last_payload(produce)
    assert set(payload.instance_data) == {
        "id",
        "code",
        "city",
        "capacity",
        "cqrs_revision",
        "cqrs_updated",
    }
    assert payload.previous_data == {
        "cqrs_revision": None,
        "code": None,
        "city": None,
        "capacity": None,
        "internal_note": None,
    }

    warehouse.capacity = 20
    warehouse.save()
    assert last_payload(produce).previous_data == {"cqrs_revision": 0, "capacity": 10}


@pytest.mark.django_db(transaction=True)
def test_delete_publishes_delete(produce):
    customer = Customer.objects.create(name="Ann")
    pk = customer.pk
    produce.reset_mock()

    customer.delete()

    assert produce.call_count == 1
    payload = last_payload(produce)
    assert payload.signal_type == SignalType.DELETE
    assert payload.pk == pk
    assert set(payload.instance_data) == {"id", "cqrs_revision", "cqrs_updated"}
    assert payload.instance_data["id"] == pk
    assert payload.instance_data["cqrs_revision"] == 1
    assert isinstance(payload.to_dict()["instance_data"]["cqrs_updated"], str)
    assert payload.previous_data is None
    assert payload.correlation_id == f"legacy:DELETE:customer:{pk}"
    assert payload.meta == {"service": "legacy-master", "signal_type": "DELETE"}


@pytest.mark.django_db(transaction=True)
def test_serializer_includes_related_rows_and_model_meta(produce):
    customer = Customer.objects.create(name="Ann")
    produce.reset_mock()

    with transaction.atomic():
        order = Order.objects.create(number="A-1", customer=customer)
        OrderLine.objects.create(order=order, sku="apple", quantity=2)
        OrderLine.objects.create(order=order, sku="pear", quantity=3)

    assert produce.call_count == 1
    payload = last_payload(produce)
    data = dict(payload.instance_data)
    assert isinstance(data.pop("cqrs_updated"), str)
    assert data == {
        "id": order.pk,
        "number": "A-1",
        "status": "placed",
        "customer": {"id": customer.pk, "name": "Ann"},
        "lines": [{"sku": "apple", "quantity": 2}, {"sku": "pear", "quantity": 3}],
        "cqrs_revision": 0,
    }
    assert payload.previous_data == {"status": None}
    assert payload.meta == {
        "service": "legacy-master",
        "signal_type": "SAVE",
        "order_status": "placed",
    }


@pytest.mark.django_db(transaction=True)
def test_to_cqrs_dict_uses_the_serializer(produce):
    order = Order.objects.create(number="A-1", customer=Customer.objects.create(name="Ann"))

    data = order.to_cqrs_dict()
    assert data["cqrs_revision"] == 0
    assert {k: v for k, v in data.items() if not k.startswith("cqrs_")} == (
        OrderSerializer(order).data
    )


@pytest.mark.django_db(transaction=True)
def test_delete_sends_custom_data(produce):
    order = Order.objects.create(number="A-7", customer=Customer.objects.create(name="Ann"))
    OrderLine.objects.create(order=order, sku="apple", quantity=1)
    produce.reset_mock()

    order.delete()

    payload = last_payload(produce)
    assert payload.signal_type == SignalType.DELETE
    assert payload.instance_data["custom"] == {"number": "A-7"}
    assert payload.meta["order_status"] == "placed"


@pytest.mark.django_db(transaction=True)
def test_drafts_are_not_synced(produce):
    customer = Customer.objects.create(name="Ann")
    produce.reset_mock()

    draft = Order.objects.create(number="D-1", status=Order.DRAFT, customer=customer)
    draft.cqrs_sync()
    produce.assert_not_called()

    draft.status = Order.PLACED
    draft.save()
    payload = last_payload(produce)
    assert payload.instance_data["cqrs_revision"] == 1
    assert payload.previous_data == {"status": "draft"}

    produce.reset_mock()
    other = Order.objects.create(number="D-2", status=Order.DRAFT, customer=customer)
    other.delete()
    produce.assert_not_called()


@pytest.mark.django_db(transaction=True)
def test_cqrs_sync(produce):
    pk = Customer.objects.create(name="Ann").pk
    produce.reset_mock()

    customer = Customer.objects.get(pk=pk)
    assert customer.cqrs_sync() is True
    payload = last_payload(produce)
    assert payload.signal_type == SignalType.SYNC
    assert payload.queue is None
    assert payload.previous_data is None
    assert payload.instance_data["cqrs_revision"] == 0
    assert payload.meta == {"service": "legacy-master", "signal_type": "SYNC"}

    assert customer.cqrs_sync(queue="legacy_replica") is True
    assert last_payload(produce).queue == "legacy_replica"
    assert produce.call_count == 2


@pytest.mark.django_db(transaction=True)
def test_cqrs_sync_of_unsaved_or_deleted_instance_is_refused(produce):
    assert Customer(name="Ann").cqrs_sync() is False

    customer = Customer.objects.create(name="Ann")
    Customer.objects.filter(pk=customer.pk).delete()
    produce.reset_mock()
    assert customer.cqrs_sync() is False
    produce.assert_not_called()


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_publishes_nothing(produce):
    with pytest.raises(ValueError):
        with transaction.atomic():
            Customer.objects.create(name="Ann")
            raise ValueError("rollback")

    produce.assert_not_called()


@pytest.mark.django_db(transaction=True)
def test_several_saves_in_one_transaction_publish_once(produce):
    with transaction.atomic():
        customer = Customer.objects.create(name="Ann")
        customer.name = "Bob"
        customer.save()
        customer.status = "vip"
        customer.save()

    assert produce.call_count == 1
    payload = last_payload(produce)
    assert payload.instance_data["name"] == "Bob"
    assert payload.instance_data["status"] == "vip"
    assert payload.instance_data["cqrs_revision"] == 0
    customer.refresh_from_db()
    assert customer.cqrs_revision == 0


@pytest.mark.django_db
def test_event_waits_for_commit(produce, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        Customer.objects.create(name="Ann")
        produce.assert_not_called()

    assert produce.call_count == 1
    assert last_payload(produce).signal_type == SignalType.SAVE


@pytest.mark.django_db(transaction=True)
def test_saves_count_within_a_transaction(produce):
    customer = Customer.objects.create(name="Ann")
    assert customer.cqrs_saves_count == 0
    assert customer.is_initial_cqrs_save

    with transaction.atomic():
        customer.save()
        assert customer.cqrs_saves_count == 1
        assert customer.is_initial_cqrs_save
        customer.save()
        assert customer.cqrs_saves_count == 2
        assert not customer.is_initial_cqrs_save

    assert customer.cqrs_saves_count == 0
    customer.reset_cqrs_saves_count()
    assert customer.cqrs_saves_count == 0


@pytest.mark.django_db(transaction=True)
def test_partial_save_publishes_only_when_asked(produce):
    customer = Customer.objects.create(name="Ann")
    produce.reset_mock()

    customer.email = "a@example.com"
    customer.save(update_fields=["email"])
    produce.assert_not_called()
    customer.refresh_from_db()
    assert customer.cqrs_revision == 0

    customer.email = "b@example.com"
    customer.save(update_fields=["email"], update_cqrs_fields=True)
    assert produce.call_count == 1
    assert last_payload(produce).instance_data["cqrs_revision"] == 1
    assert last_payload(produce).instance_data["email"] == "b@example.com"


@pytest.mark.django_db(transaction=True)
def test_bulk_create_publishes_each_row(produce):
    created = Customer.cqrs.bulk_create([Customer(id=101, name="a"), Customer(id=102, name="b")])

    assert len(created) == 2
    sent = sorted(payloads(produce), key=lambda payload: payload.pk)
    assert [payload.pk for payload in sent] == [101, 102]
    for payload in sent:
        assert payload.signal_type == SignalType.SAVE
        assert payload.instance_data["cqrs_revision"] == 0
        assert payload.previous_data == {"name": None, "status": None}


@pytest.mark.django_db(transaction=True)
def test_bulk_update_publishes_each_row_with_previous_values(produce):
    first = Customer.objects.create(name="a")
    second = Customer.objects.create(name="b")
    Customer.objects.create(name="c", status="gone")
    produce.reset_mock()

    updated = Customer.cqrs.bulk_update(Customer.objects.filter(status="active"), status="blocked")

    assert updated == 2
    sent = sorted(payloads(produce), key=lambda payload: payload.pk)
    assert [payload.pk for payload in sent] == [first.pk, second.pk]
    for payload, name in zip(sent, ("a", "b")):
        assert payload.instance_data["status"] == "blocked"
        assert payload.instance_data["cqrs_revision"] == 1
        assert payload.previous_data == {"name": name, "status": "active"}
    assert sent[0].instance_data["cqrs_updated"] == sent[1].instance_data["cqrs_updated"]


@pytest.mark.django_db(transaction=True)
def test_manual_post_bulk_create(produce):
    Customer.objects.bulk_create([Customer(name="a"), Customer(name="b")])
    produce.assert_not_called()

    Customer.call_post_bulk_create(list(Customer.objects.all()))
    assert produce.call_count == 2


@pytest.mark.django_db(transaction=True)
def test_mptt_master_registered_by_hand(produce):
    root = Node.objects.create(name="root")
    leaf = Node.objects.create(name="leaf", parent=root)

    assert MasterRegistry.models["node"] is Node
    by_pk = {payload.pk: payload for payload in payloads(produce)}
    assert set(by_pk) == {root.pk, leaf.pk}
    assert by_pk[root.pk].previous_data == {"name": None}
    assert by_pk[leaf.pk].previous_data == {"name": None, "parent_id": None}
    assert by_pk[leaf.pk].instance_data["parent"] == root.pk
    assert by_pk[leaf.pk].instance_data["level"] == 1

    other = Node.objects.create(name="other")
    produce.reset_mock()
    leaf.parent = other
    leaf.save()

    moved = [payload for payload in payloads(produce) if payload.pk == leaf.pk][-1]
    assert moved.instance_data["parent"] == other.pk
    assert moved.instance_data["cqrs_revision"] == 1
    assert moved.previous_data == {"parent": root.pk}


# Transport, producer and payload


def test_current_transport_is_the_mock():
    from dj_cqrs.transport import current_transport

    assert current_transport is TransportMock
    assert issubclass(RecordingTransport, BaseTransport)


def test_transport_mock_hands_the_payload_back():
    payload = TransportPayload(SignalType.SAVE, "customer", {"id": 1}, 1)

    assert TransportMock.produce(payload) is payload
    assert TransportMock.consume(payload) is payload


@pytest.mark.django_db(transaction=True)
def test_master_publishes_through_the_configured_transport(mocker):
    transport_produce = mocker.patch("dj_cqrs.transport.mock.TransportMock.produce")

    Customer.objects.create(name="Ann")
    assert transport_produce.call_count == 1
    assert transport_produce.call_args[0][0].cqrs_id == "customer"

    producer.produce(TransportPayload("SAVE", "x", {}, "pk", previous_data={"a": "b"}))
    assert transport_produce.call_args[0][0].to_dict() == {
        "signal_type": "SAVE",
        "cqrs_id": "x",
        "instance_data": {},
        "previous_data": {"a": "b"},
        "instance_pk": "pk",
        "correlation_id": "legacy:SAVE:x:pk",
        "retries": 0,
        "expires": None,
        "meta": None,
    }


def test_payload_from_message_round_trip():
    message = {
        "signal_type": "SAVE",
        "cqrs_id": "customer",
        "instance_data": {"id": 7, "name": "Ann", "cqrs_revision": 2, "cqrs_updated": "x"},
        "previous_data": {"name": "An"},
        "instance_pk": 7,
        "correlation_id": "abc",
        "retries": 2,
        "expires": "2030-01-01T10:00:00+00:00",
        "meta": {"service": "billing"},
    }

    payload = TransportPayload.from_message(message)
    assert payload.signal_type == SignalType.SAVE
    assert payload.pk == 7
    assert payload.retries == 2
    assert payload.correlation_id == "abc"
    assert payload.expires == datetime(2030, 1, 1, 10, tzinfo=timezone.utc)
    assert not payload.is_expired()
    assert payload.to_dict() == message

    payload.retries = 3
    assert payload.to_dict()["retries"] == 3


def test_payload_expiry_rules():
    base = {"signal_type": "SYNC", "cqrs_id": "customer", "instance_data": {}, "instance_pk": 1}

    before = now()
    defaulted = TransportPayload.from_message(base)
    assert_expires_in(defaulted, 3600, before, now())

    assert TransportPayload.from_message({**base, "expires": None}).expires is None
    past = TransportPayload.from_message({**base, "expires": "2020-01-01T00:00:00+00:00"})
    assert past.is_expired()


def test_payload_defaults():
    payload = TransportPayload(SignalType.DELETE, "customer", {"id": 1}, 1)

    assert payload.correlation_id == "legacy:DELETE:customer:1"
    assert payload.queue is None
    assert payload.previous_data is None
    assert payload.expires is None
    assert payload.retries == 0
    assert payload.meta is None


def test_helpers_and_constants(settings):
    assert get_correlation_id(SignalType.SAVE, "customer", 5, None) == "legacy:SAVE:customer:5"

    before = now()
    default_ttl = get_message_expiration_dt()
    short_ttl = get_message_expiration_dt(60)
    after = now()
    assert before + timedelta(seconds=3600) <= default_ttl <= after + timedelta(seconds=3600)
    assert before + timedelta(seconds=60) <= short_ttl <= after + timedelta(seconds=60)

    settings.CQRS["master"]["CQRS_MESSAGE_TTL"] = None
    assert get_message_expiration_dt() is None

    assert (SignalType.SAVE, SignalType.DELETE, SignalType.SYNC) == ("SAVE", "DELETE", "SYNC")
    assert ALL_BASIC_FIELDS == "__all__"
    assert DEFAULT_MASTER_AUTO_UPDATE_FIELDS is False
    assert DEFAULT_MASTER_MESSAGE_TTL == 86400
    assert DEFAULT_REPLICA_MAX_RETRIES == 30
    assert DEFAULT_REPLICA_RETRY_DELAY == 2


def test_registries():
    assert MasterRegistry.models["customer"] is Customer
    assert MasterRegistry.get_model_by_cqrs_id("order") is Order
    assert ReplicaRegistry.get_model_by_cqrs_id("order") is OrderRef
    assert ReplicaRegistry.models["warehouse"] is WarehouseFeed
    assert ReplicaRegistry.get_model_by_cqrs_id("missing") is None
    assert MasterRegistry.get_model_by_cqrs_id("missing") is None


# Replica side: applying events


@pytest.mark.django_db(transaction=True)
def test_save_creates_and_updates_mapped_replica():
    created = route_signal_to_replica_model(
        SignalType.SAVE,
        "customer",
        master_data(id=1, name="Ann", status="active", email="dropped@example.com"),
    )
    assert isinstance(created, CustomerRef)
    row = CustomerRef.objects.get(pk=1)
    assert (row.full_name, row.state, row.cqrs_revision) == ("Ann", "active", 0)

    updated = route_signal_to_replica_model(
        SignalType.SAVE,
        "customer",
        master_data(id=1, name="Anna", status="vip", cqrs_revision=1),
        previous_data={"name": "Ann"},
    )
    assert updated.pk == 1
    row.refresh_from_db()
    assert (row.full_name, row.state, row.cqrs_revision) == ("Anna", "vip", 1)


@pytest.mark.django_db(transaction=True)
def test_duplicates_and_stale_events_are_skipped_but_sync_applies():
    route_signal_to_replica_model(
        SignalType.SAVE, "customer", master_data(id=1, name="v2", status="a", cqrs_revision=2)
    )

    for revision in (2, 1):
        result = route_signal_to_replica_model(
            SignalType.SAVE,
            "customer",
            master_data(id=1, name="old", status="a", cqrs_revision=revision),
        )
        assert isinstance(result, CustomerRef)
        assert CustomerRef.objects.get(pk=1).full_name == "v2"

    route_signal_to_replica_model(
        SignalType.SYNC, "customer", master_data(id=1, name="repaired", status="a")
    )
    row = CustomerRef.objects.get(pk=1)
    assert (row.full_name, row.cqrs_revision) == ("repaired", 0)


@pytest.mark.django_db(transaction=True)
def test_delete_removes_the_replica():
    route_signal_to_replica_model(
        SignalType.SAVE, "customer", master_data(id=1, name="Ann", status="a")
    )

    delete = master_data(id=1, cqrs_revision=1)
    assert route_signal_to_replica_model(SignalType.DELETE, "customer", delete) is True
    assert not CustomerRef.objects.filter(pk=1).exists()
    assert route_signal_to_replica_model(SignalType.DELETE, "customer", delete) is True


@pytest.mark.django_db(transaction=True)
def test_bad_events_are_not_applied():
    assert route_signal_to_replica_model("UPSERT", "customer", master_data(id=1)) is None
    assert route_signal_to_replica_model(SignalType.SAVE, "nobody", master_data(id=1)) is None
    assert route_signal_to_replica_model(SignalType.SAVE, "customer", master_data(id=1)) is None
    assert not CustomerRef.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_custom_serialization_receives_meta_and_previous_data():
    order = master_data(
        id=5,
        number="A-5",
        status="placed",
        customer={"id": 1, "name": "Ann"},
        lines=[{"sku": "a", "quantity": 2}, {"sku": "b", "quantity": 4}],
    )
    created = consume(TransportPayload(SignalType.SAVE, "order", order, 5, meta={"service": "x"}))
    assert isinstance(created, OrderRef)
    row = OrderRef.objects.get(pk=5)
    assert (row.customer_name, row.total_quantity, row.source) == ("Ann", 6, "x")

    shipped = dict(order, status="shipped", cqrs_revision=1, lines=[])
    consume(
        TransportPayload(
            SignalType.SAVE,
            "order",
            shipped,
            5,
            previous_data={"status": "placed"},
            meta={"service": "y"},
        )
    )
    row.refresh_from_db()
    assert (row.total_quantity, row.previous_status, row.source) == (0, "placed", "y")
    assert row.cqrs_revision == 1


def test_no_db_replica_gets_events_without_database():
    WarehouseFeed.received.clear()
    data = master_data(id=3, code="W3", city="Oslo", capacity=1)

    assert route_signal_to_replica_model(SignalType.SAVE, "warehouse", data) is True
    assert route_signal_to_replica_model(SignalType.SYNC, "warehouse", data) is True
    assert route_signal_to_replica_model(SignalType.DELETE, "warehouse", data) is True
    assert WarehouseFeed.received == [
        ("save", "W3", False),
        ("save", "W3", True),
        ("delete", 3, False),
    ]


@pytest.mark.django_db(transaction=True)
def test_replica_manager_and_classmethods():
    created = CustomerRef.cqrs.save_instance(master_data(id=9, name="Ann", status="a"))
    assert created.full_name == "Ann"

    synced = CustomerRef.cqrs_save(master_data(id=9, name="Zed", status="a"), sync=True)
    assert synced.full_name == "Zed"

    assert CustomerRef.cqrs_delete(master_data(id=9, cqrs_revision=1)) is True
    assert not CustomerRef.objects.exists()


def test_retry_hooks(settings):
    assert OrderRef.should_retry_cqrs(2) is True
    assert OrderRef.should_retry_cqrs(3) is False
    assert OrderRef.should_retry_cqrs(0, exception=ValueError("bad data")) is False
    assert OrderRef.get_cqrs_retry_delay(3) == 8

    assert CustomerRef.should_retry_cqrs(4) is True
    assert CustomerRef.should_retry_cqrs(5) is False
    assert CustomerRef.get_cqrs_retry_delay(0) == 1

    settings.CQRS["replica"]["CQRS_MAX_RETRIES"] = None
    settings.CQRS["replica"]["CQRS_RETRY_DELAY"] = 7
    assert CustomerRef.should_retry_cqrs(1000) is True
    assert CustomerRef.get_cqrs_retry_delay(1) == 7


# Master to replica, through the wire format


@pytest.mark.django_db(transaction=True)
def test_master_to_replica_round_trip(produce):
    customer = Customer.objects.create(name="Ann")
    with transaction.atomic():
        order = Order.objects.create(number="A-1", customer=customer)
        OrderLine.objects.create(order=order, sku="apple", quantity=2)
    root = Node.objects.create(name="root")
    leaf = Node.objects.create(name="leaf", parent=root)

    for payload in payloads(produce):
        assert consume(over_the_wire(payload))

    assert CustomerRef.objects.get(pk=customer.pk).full_name == "Ann"
    order_ref = OrderRef.objects.get(pk=order.pk)
    assert (order_ref.customer_name, order_ref.total_quantity) == ("Ann", 2)
    assert order_ref.source == "legacy-master"
    assert NodeRef.objects.get(pk=leaf.pk).parent == root.pk

    produce.reset_mock()
    order.status = Order.SHIPPED
    order.save()
    customer_pk = customer.pk
    Order.objects.all().delete()
    customer.delete()
    for payload in payloads(produce):
        assert consume(over_the_wire(payload))

    assert not CustomerRef.objects.filter(pk=customer_pk).exists()
    assert not OrderRef.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_recording_transport_replays_into_replicas():
    RecordingTransport.clean_connection()
    RecordingTransport.produce(
        TransportPayload(SignalType.SAVE, "customer", master_data(id=4, name="Ann", status="a"), 4)
    )

    assert len(RecordingTransport.payloads) == 1
    RecordingTransport.consume()
    assert RecordingTransport.payloads == []
    assert CustomerRef.objects.get(pk=4).full_name == "Ann"


# Management commands and admin


@pytest.mark.django_db(transaction=True)
def test_cqrs_sync_command(produce, capsys):
    for name in ("a", "b"):
        Customer.objects.create(name=name)
    produce.reset_mock()

    call_command("cqrs_sync", "--cqrs-id=customer", "-f={}")

    assert produce.call_count == 2
    assert {payload.signal_type for payload in payloads(produce)} == {SignalType.SYNC}
    assert "Done!\n2 instance(s) synced.\n2 instance(s) processed." in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_cqrs_sync_command_for_one_queue(produce, capsys):
    customer = Customer.objects.create(name="a")
    Customer.objects.create(name="b")
    produce.reset_mock()

    call_command(
        "cqrs_sync",
        "--cqrs-id=customer",
        f'-f={{"id": {customer.pk}}}',
        "-q=legacy_replica",
    )

    assert produce.call_count == 1
    assert last_payload(produce).queue == "legacy_replica"
    assert last_payload(produce).pk == customer.pk
    assert "Done!\n1 instance(s) synced.\n1 instance(s) processed." in capsys.readouterr().out


@pytest.mark.django_db
def test_command_errors():
    with pytest.raises(CommandError) as e:
        call_command("cqrs_sync", "--cqrs-id=nope", "-f={}")
    assert "Wrong CQRS ID: nope!" in str(e.value)

    with pytest.raises(CommandError) as e:
        call_command("cqrs_sync", "--cqrs-id=customer", "-f=[1]")
    assert "Bad filter kwargs!" in str(e.value)

    with pytest.raises(CommandError) as e:
        call_command("cqrs_consume", "--cqrs-id=nope")
    assert "Wrong CQRS ID: nope!" in str(e.value)


@pytest.mark.django_db(transaction=True)
def test_bulk_dump_then_load_into_replica(produce, tmp_path, capsys):
    Customer.objects.create(name="Ann")
    Customer.objects.create(name="Bob", status="vip")
    dump = tmp_path / "customers.dump"

    call_command("cqrs_bulk_dump", "--cqrs-id=customer", f"-o={dump}")
    lines = dump.read_text().splitlines()
    assert lines[0] == "customer"
    assert sorted(json.loads(line)["name"] for line in lines[1:]) == ["Ann", "Bob"]

    call_command("cqrs_bulk_load", f"-i={dump}")
    assert sorted(CustomerRef.objects.values_list("full_name", "state")) == [
        ("Ann", "active"),
        ("Bob", "vip"),
    ]
    assert "Done!\n2 instance(s) loaded." in capsys.readouterr().err


def test_admin_offers_the_sync_action(mocker):
    model_admin = CustomerAdmin(Customer, admin.site)

    assert "sync_items" in model_admin.get_actions(mocker.MagicMock())


@pytest.mark.django_db(transaction=True)
def test_admin_sync_action(produce, mocker):
    Customer.objects.create(name="a")
    Customer.objects.create(name="b")
    produce.reset_mock()
    model_admin = CustomerAdmin(Customer, admin.site)
    model_admin.message_user = mocker.Mock()

    model_admin.sync_items(None, Customer.objects.all())

    assert [payload.signal_type for payload in payloads(produce)] == ["SYNC", "SYNC"]
    model_admin.message_user.assert_called_once_with(None, "2 successfully synced. 0 failed: []")


# The service as deployed: real settings, its own processes

HERE = Path(__file__).resolve().parent
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


def production_env(tmp_path, **extra):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="legacy_project.settings", CQRS_TEST_DB="sqlite")
    env["LEGACY_SERVICE_SQLITE"] = str(tmp_path / "service.sqlite3")
    env.update(extra)
    return env


def manage(env, *args):
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def wait_for(check, what, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"Timed out after {timeout}s waiting for {what}.")


def test_production_settings_run_with_the_custom_transport(tmp_path):
    env = production_env(tmp_path)
    script = (
        "from dj_cqrs.transport import current_transport\n"
        "from legacy_project.master_app.models import Customer\n"
        "from legacy_project.replica_app.models import CustomerRef\n"
        "from legacy_project.transport import RecordingTransport\n"
        "assert current_transport is RecordingTransport, current_transport\n"
        "customer = Customer.objects.create(name='Prod')\n"
        "print(RecordingTransport.payloads[-1].to_dict()['cqrs_id'])\n"
        "RecordingTransport.consume()\n"
        "print(CustomerRef.objects.get(pk=customer.pk).full_name)\n"
    )
    manage(env, "check")
    manage(env, "migrate", "--run-syncdb", "-v", "0")
    out = manage(env, "shell", "-c", script)

    assert out.split()[-2:] == ["customer", "Prod"], out


@pytest.fixture
def rabbitmq():
    pika = pytest.importorskip("pika")
    try:
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    except pika.exceptions.AMQPConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    suffix = uuid.uuid4().hex[:8]
    names = {"exchange": "legacy_x_" + suffix, "queue": "legacy_q_" + suffix}
    yield connection, names
    channel = connection.channel()
    # Also the ".delay" names a transport may declare for delayed retries; deleting a missing
    # queue or exchange is not an error for RabbitMQ.
    for queue in (names["queue"], "dead_letter_" + names["queue"], names["queue"] + ".delay"):
        channel.queue_delete(queue)
    for exchange in (names["exchange"], names["exchange"] + ".delay"):
        channel.exchange_delete(exchange)
    connection.close()


def test_replicates_over_rabbitmq_with_cqrs_consume(rabbitmq, tmp_path):
    pika = pytest.importorskip("pika")
    connection, names = rabbitmq
    env = production_env(
        tmp_path,
        CQRS_TRANSPORT="dj_cqrs.transport.RabbitMQTransport",
        CQRS_URL=RABBITMQ_URL,
        CQRS_EXCHANGE=names["exchange"],
        CQRS_QUEUE=names["queue"],
    )
    manage(env, "migrate", "--run-syncdb", "-v", "0")

    def consumer_is_listening():
        channel = connection.channel()
        try:
            declared = channel.queue_declare(names["queue"], passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return False
        channel.close()
        return declared.method.consumer_count > 0

    def replicated():
        with sqlite3.connect(env["LEGACY_SERVICE_SQLITE"], timeout=30) as db:
            orders = db.execute(
                "SELECT customer_name, total_quantity, source FROM replica_app_orderref"
            ).fetchall()
        return orders == [("Rabbit", 5, "legacy-master")]

    log = open(tmp_path / "consumer.log", "w")
    consumer = subprocess.Popen(
        [sys.executable, "manage.py", "cqrs_consume", "-w", "1"],
        cwd=HERE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(consumer_is_listening, "cqrs_consume to listen")
        manage(
            env,
            "shell",
            "-c",
            "from django.db import transaction\n"
            "from legacy_project.master_app.models import Customer, Order, OrderLine\n"
            "with transaction.atomic():\n"
            "    order = Order.objects.create(\n"
            "        number='R-1', customer=Customer.objects.create(name='Rabbit'))\n"
            "    OrderLine.objects.create(order=order, sku='a', quantity=2)\n"
            "    OrderLine.objects.create(order=order, sku='b', quantity=3)\n",
        )
        wait_for(replicated, "the order to reach its replica")
    except BaseException:
        log.flush()
        print((tmp_path / "consumer.log").read_text())
        raise
    finally:
        os.killpg(consumer.pid, signal.SIGTERM)
        try:
            consumer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(consumer.pid, signal.SIGKILL)
            consumer.wait()
        log.close()
