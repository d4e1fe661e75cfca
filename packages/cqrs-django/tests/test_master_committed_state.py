"""Events carry the committed state; every event goes through `dj_cqrs.controller.producer`.

- a 3.x test suite's `mock.patch('dj_cqrs.controller.producer.produce')` sees each payload right
  after commit, and a 3.x-style transport class gets them at commit, one call per event;
- `is_sync_instance()` False publishes neither SAVE nor DELETE;
- instance data is serialized after commit: a CQRS_SERIALIZER sees what the transaction wrote
  after the save, and its failure neither raises from `save()` nor loses the event;
- a SYNC that was held back and overtaken by a SAVE carries the newest state (memory transport
  and real RabbitMQ).
"""

from __future__ import annotations

import datetime
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar
from unittest import mock

import pytest
from cqrs_replica_models import AuthorRef
from cqrs_testproject.master_app.models import Author, Customer, FilteredItem, Order, Product
from cqrs_testproject.master_app.serializers import OrderSerializer
from cqrs_testproject.master_app.testing import use_recording
from django.db import transaction
from replica_support import memory_cqrs_fixture  # noqa: F401  (fixture `memory_cqrs`)

from cqrs_core.testing._consuming import consume_until
from cqrs_core.transports.memory import MemoryTransport
from dj_cqrs.consumer import make_handler, resolve_cqrs_ids
from dj_cqrs.outbox import background_publisher
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.relay import Relay
from dj_cqrs.outbox.rows import DROPPED_NOTE
from dj_cqrs.outbox.settings import outbox_settings

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

UTC = datetime.timezone.utc
PRODUCE = "dj_cqrs.controller.producer.produce"


@pytest.fixture
def recorder(settings: Any) -> Iterator[Any]:
    background_publisher.resume()
    yield from use_recording(settings, outbox={"grace": 0.0})
    background_publisher.resume()


def produced(produce: Any) -> list[tuple[str, str, Any]]:
    """(signal type, cqrs_id, instance_data) of each `produce` call, in order."""
    out = []
    for call in produce.call_args_list:
        (payload,) = call.args
        out.append((payload.signal_type.value, payload.cqrs_id, payload.instance_data))
    return out


def pending_rows() -> int:
    return OutboxEvent.objects.filter(sent_at__isnull=True).count()


# -- the producer funnel ---------------------------------------------------------------------


def test_patched_produce_sees_every_payload_right_after_commit(recorder: Any) -> None:
    with mock.patch(PRODUCE) as produce:
        author = Author.objects.create(name="Ann")
        assert produced(produce) == [("SAVE", "author", mock.ANY)]
        assert produce.call_args.args[0].instance_data["name"] == "Ann"
        assert produce.call_args.args[0].expires is not None

        author.name = "Bea"
        author.save()
        assert produce.call_count == 2
        assert produce.call_args.args[0].instance_data["name"] == "Bea"
        assert produce.call_args.args[0].instance_data["cqrs_revision"] == 1

        with transaction.atomic():
            author.name = "Cid"
            author.save()
            author.save()
            assert produce.call_count == 2  # nothing before commit
        assert produce.call_count == 3  # one event per instance per transaction

        assert author.cqrs_sync()
        assert produced(produce)[-1][0] == "SYNC"

        author.delete()
        signal, cqrs_id, data = produced(produce)[-1]
        assert (signal, cqrs_id, data["cqrs_revision"]) == ("DELETE", "author", 3)

        products = Product.cqrs.bulk_create(
            [Product(name="A", price=Decimal("1.00")), Product(name="B", price=Decimal("2.00"))]
        )
        assert [d["name"] for s, _, d in produced(produce)[-2:] if s == "SAVE"] == ["A", "B"]
        Product.cqrs.bulk_update(
            Product.objects.filter(pk__in=[p.pk for p in products]), quantity=9
        )
        assert [d["quantity"] for _, _, d in produced(produce)[-2:]] == [9, 9]
        assert produce.call_count == 9
    # Loss-free as ever: each row was stored with its change and removed once produced.
    assert pending_rows() == 0
    assert recorder.sent() == []  # nothing went around the patched function


def test_patching_produce_through_the_signals_module_works_too(recorder: Any) -> None:
    with mock.patch("dj_cqrs.signals.producer.produce") as produce:  # 3.x's import path
        Author.objects.create(name="Ann")
    assert produced(produce) == [("SAVE", "author", mock.ANY)]
    assert pending_rows() == 0


def test_failing_produce_leaves_the_row_for_the_relay(recorder: Any) -> None:
    with mock.patch(PRODUCE, side_effect=RuntimeError("broker down")) as produce:
        author = Author.objects.create(name="Ann")  # must not raise
        assert produce.call_count == 1
    row = OutboxEvent.objects.get()
    assert row.sent_at is None and "broker down" in row.last_error
    assert Relay(settings=outbox_settings()).run(until_empty=True) == 1
    [message] = recorder.sent()
    assert message.data["instance_data"]["name"] == "Ann"
    assert message.data["instance_pk"] == author.pk


class RecordingLegacy:
    """Built in `legacy_transport` as a subclass of 3.x's `BaseTransport` (imported lazily)."""

    payloads: ClassVar[list[Any]] = []
    threads: ClassVar[list[int]] = []


@pytest.fixture
def legacy_transport(settings: Any) -> Iterator[type]:
    from dj_cqrs.conf import reset_transport
    from dj_cqrs.transport.base import BaseTransport

    class Legacy(BaseTransport):
        @staticmethod
        def produce(payload: Any) -> None:
            RecordingLegacy.payloads.append(payload)
            RecordingLegacy.threads.append(threading.get_ident())

        @staticmethod
        def consume(*args: Any, **kwargs: Any) -> None:
            return None

        @staticmethod
        def clean_connection(*args: Any, **kwargs: Any) -> None:
            return None

    RecordingLegacy.payloads.clear()
    RecordingLegacy.threads.clear()
    settings.CQRS = {
        "transport": Legacy,
        "queue": "legacy_tests",
        "master": {"CQRS_MESSAGE_TTL": 86400, "outbox": {"grace": 0.0}},
    }
    try:
        yield Legacy
    finally:
        reset_transport()


def test_legacy_transport_class_gets_each_event_at_commit_in_the_committing_thread(
    legacy_transport: type,
) -> None:
    author = Author.objects.create(name="Ann")
    assert [p.instance_data["name"] for p in RecordingLegacy.payloads] == ["Ann"]
    with transaction.atomic():
        author.name = "Bea"
        author.save()
        Author.objects.create(name="Cid")
        assert len(RecordingLegacy.payloads) == 1
    assert [p.instance_data["name"] for p in RecordingLegacy.payloads] == ["Ann", "Bea", "Cid"]
    author.delete()
    assert [p.signal_type.value for p in RecordingLegacy.payloads][-1] == "DELETE"
    assert set(RecordingLegacy.threads) == {threading.get_ident()}
    assert pending_rows() == 0


# -- is_sync_instance ------------------------------------------------------------------------


def test_is_sync_instance_false_publishes_neither_save_nor_delete(recorder: Any) -> None:
    with mock.patch(PRODUCE) as produce:
        hidden = FilteredItem.objects.create(title="draft", syncable=False)
        hidden.title = "still a draft"
        hidden.save()
        FilteredItem.cqrs.bulk_create([FilteredItem(title="bulk draft", syncable=False)])
        FilteredItem.cqrs.bulk_update(FilteredItem.objects.all(), secret="x")
        hidden.delete()
        assert produce.call_count == 0
        shown = FilteredItem.objects.create(title="public")
        assert produced(produce) == [("SAVE", "filtered_item", mock.ANY)]
        with transaction.atomic():  # hidden before commit: checked again then, as in 3.x
            shown.title = "retracted"
            shown.save()
            shown.syncable = False
        assert produce.call_count == 1
    assert pending_rows() == 0


def test_the_relay_checks_is_sync_instance_on_the_committed_row(
    recorder: Any, settings: Any
) -> None:
    settings.CQRS = {
        **settings.CQRS,
        "master": {**settings.CQRS["master"], "outbox": {"grace": 0.0, "fast_path": False}},
    }
    item = FilteredItem.objects.create(title="x")
    FilteredItem.objects.filter(pk=item.pk).update(syncable=False)  # made private since
    assert pending_rows() == 1
    assert Relay(settings=outbox_settings()).run(until_empty=True) == 0
    assert recorder.sent() == []
    assert pending_rows() == 0  # dropped, not retried


# -- serialized after commit ------------------------------------------------------------------


@pytest.fixture
def order(recorder: Any) -> Order:
    customer = Customer.objects.create(name="Old name", email="c@example.com")
    created = Order.objects.create(
        number="N1",
        total=Decimal("10.00"),
        customer=customer,
        created_at=datetime.datetime(2026, 1, 1, tzinfo=UTC),
    )
    recorder.clear()
    return created


def test_serializer_sees_what_the_transaction_wrote_after_the_save(
    recorder: Any, order: Order
) -> None:
    with transaction.atomic():
        order.total = Decimal("12.00")
        order.save()
        Customer.objects.filter(pk=order.customer_id).update(name="New name")
    [message] = recorder.sent()
    assert message.data["instance_data"]["customer"]["name"] == "New name"
    assert message.data["instance_data"]["total"] == "12.00"

    with mock.patch(PRODUCE) as produce, transaction.atomic():  # also at commit, 3.x's way
        order.save()
        Customer.objects.filter(pk=order.customer_id).update(name="Newest name")
    assert produce.call_args.args[0].instance_data["customer"]["name"] == "Newest name"


def test_serializer_failure_does_not_raise_and_the_event_is_sent_once_it_works(
    recorder: Any, order: Order, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Any) -> Any:
        raise ValueError("serializer is broken")

    with mock.patch.object(OrderSerializer, "data", property(broken)):
        order.total = Decimal("99.00")
        order.save()  # must not raise
        assert background_publisher.flush(30)
        with mock.patch(PRODUCE) as produce:
            order.save()  # nor at commit on the synchronous path
            assert produce.call_count == 0
        relay = Relay(settings=outbox_settings())
        assert relay.run(until_empty=True) == 0  # still broken: kept, not sent, not stuck
    assert recorder.sent() == []
    rows = list(OutboxEvent.objects.filter(sent_at__isnull=True))
    assert len(rows) == 2
    assert all(r.attempts >= 1 and "serializer is broken" in r.last_error for r in rows)
    assert "serializer is broken" in caplog.text and f"order:{order.pk}" in caplog.text

    assert Relay(settings=outbox_settings()).run(until_empty=True) == 2  # fixed: sent
    assert [m.data["instance_data"]["total"] for m in recorder.sent()] == ["99.00", "99.00"]
    assert pending_rows() == 0


@pytest.mark.parametrize("keep_days", [0, 1])
def test_rows_of_deleted_instances_are_dropped(
    recorder: Any, settings: Any, keep_days: int
) -> None:
    outbox = {"grace": 0.0, "fast_path": False, "keep_days": keep_days}
    settings.CQRS = {**settings.CQRS, "master": {**settings.CQRS["master"], "outbox": outbox}}
    author = Author.objects.create(name="Ann")
    author.name = "Bea"
    author.save()
    author.delete()
    assert pending_rows() == 3
    assert Relay(settings=outbox_settings()).run(until_empty=True) == 1
    assert [m.data["signal_type"] for m in recorder.sent()] == ["DELETE"]
    assert pending_rows() == 0
    # kept rows tell an operator which events never became messages
    kept = list(OutboxEvent.objects.values_list("signal_type", "last_error").order_by("id"))
    expected = [("SAVE", DROPPED_NOTE), ("SAVE", DROPPED_NOTE), ("DELETE", "")]
    assert kept == (expected if keep_days else [])


# -- the overtaken SYNC (issue 14 item 2) --------------------------------------------------


def test_overtaken_sync_carries_the_newest_state_memory(
    memory_cqrs: MemoryTransport, settings: Any
) -> None:
    master = {**settings.CQRS.get("master", {}), "outbox": {"grace": 0.0}}
    settings.CQRS = {**settings.CQRS, "master": master}
    author = Author.objects.create(name="v1", email="a@example.com")
    assert background_publisher.flush(30)
    # The SYNC is held back (the fast path could not send it), then a save overtakes it.
    settings.CQRS = {**settings.CQRS, "master": {**master, "outbox": {"fast_path": False}}}
    assert author.cqrs_sync()
    assert pending_rows() == 1
    settings.CQRS = {**settings.CQRS, "master": master}
    author.name = "v2"
    author.save()
    assert background_publisher.flush(30)
    assert pending_rows() == 1  # only the SYNC is left
    assert Relay(settings=outbox_settings()).run(until_empty=True) == 1

    ids = resolve_cqrs_ids()
    consume_until(
        memory_cqrs,
        make_handler(ids),
        lambda: memory_cqrs.broker.depth("replica") == 0,
        cqrs_ids=ids,
        timeout=60,
    )
    replica = AuthorRef.objects.get(pk=author.pk)
    assert (replica.name, replica.cqrs_revision) == ("v2", 1)


def test_overtaken_sync_carries_the_newest_state_rabbitmq(rabbit: Any) -> None:
    author = Author.objects.create(name="v1")
    rabbit.read(1)
    rabbit.proxy.refuse()
    assert author.cqrs_sync()  # the broker is down: left to the relay
    assert background_publisher.flush(60)
    assert pending_rows() == 1
    rabbit.proxy.accept()
    background_publisher.resume()
    author.name = "v2"
    author.save()  # overtakes the SYNC
    assert background_publisher.flush(60)
    assert Relay(settings=outbox_settings()).run(until_empty=True) == 1
    got = rabbit.read(2)
    assert [(p.signal_type.value, p.instance_data["cqrs_revision"]) for p in got.payloads] == [
        ("SAVE", 1),
        ("SYNC", 1),
    ]
    assert got.payloads[-1].instance_data["name"] == "v2"


@pytest.fixture
def rabbit(settings: Any) -> Iterator[Any]:
    """A RabbitMQ master behind a TCP proxy (the outage), read back directly."""
    from test_outbox_faults import HOST, PORT, Broker  # the fixtures of the outbox fault tests

    from cqrs_core.testing.proxy import TcpProxy

    vhosts = _vhost()
    name = next(vhosts)
    try:
        with TcpProxy(HOST, PORT) as proxy:
            env = Broker(name, proxy, f"replica_{uuid.uuid4().hex[:8]}")
            with env.consumer() as transport:
                transport.declare(["author"])
            settings.CQRS = env.cqrs(url=env.proxy_url, outbox={"grace": 0.0})
            background_publisher.resume()
            try:
                yield env
            finally:
                background_publisher.resume()
                from dj_cqrs.conf import reset_transport

                reset_transport()
    finally:
        vhosts.close()


def _vhost() -> Iterator[str]:
    import socket

    from test_outbox_faults import HOST, PORT

    from cqrs_core.testing.plugin import service_unavailable

    try:
        socket.create_connection((HOST, PORT), timeout=3).close()
    except OSError as exc:
        service_unavailable(f"RabbitMQ at {HOST}:{PORT}", exc)
    from cqrs_rabbitmq.testing import temporary_vhost

    with temporary_vhost("cqrs_committed") as name:
        if name is None:
            service_unavailable("rabbitmqctl add_vhost", "needed for an isolated virtual host")
        yield name
