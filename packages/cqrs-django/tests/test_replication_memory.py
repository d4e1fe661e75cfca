"""Master → memory transport → replica, end to end (the foundation issue's Done criterion).

Master models (master_app) publish on commit; the replica handler applies what the memory
broker delivers. The last tests deliver every event twice, shuffled, to several concurrent
consumers, and check that the replica ends equal to the master.
"""

from __future__ import annotations

import datetime
import decimal
import random
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from cqrs_replica_models import AuthorRef, ProductRef
from cqrs_testproject.master_app.models import Author, Product
from django.db import connection
from replica_support import memory_cqrs_fixture  # noqa: F401  (fixture `memory_cqrs`)

from cqrs_core import codec
from cqrs_core.payload import TransportPayload
from cqrs_core.testing._consuming import consume_until
from cqrs_core.transports.memory import MemoryTransport
from dj_cqrs import conf
from dj_cqrs.consumer import make_handler, resolve_cqrs_ids
from dj_cqrs.outbox import background_publisher

pytestmark = pytest.mark.django_db(transaction=True)

UTC = datetime.timezone.utc


def master_state() -> dict[str, dict[Any, tuple[Any, ...]]]:
    return {
        "author": {
            a.pk: (a.name, a.email, a.birth_date, a.cqrs_revision) for a in Author.objects.all()
        },
        "product": {
            p.pk: (
                p.name,
                p.quantity,
                p.price,
                p.release_date,
                p.published_at,
                p.is_active,
                p.note,
                p.external_uuid,
                p.cqrs_revision,
            )
            for p in Product.objects.all()
        },
    }


def replica_state() -> dict[str, dict[Any, tuple[Any, ...]]]:
    return {
        "author": {
            a.pk: (a.name, a.email, a.birth_date, a.cqrs_revision) for a in AuthorRef.objects.all()
        },
        "product": {
            p.pk: (
                p.title,
                p.stock,
                p.price,
                p.release_date,
                p.published_at,
                p.is_active,
                p.note,
                p.external_uuid,
                p.cqrs_revision,
            )
            for p in ProductRef.objects.all()
        },
    }


def in_sync() -> bool:
    return master_state() == replica_state()


def consume_until_in_sync(transport: MemoryTransport, timeout: float = 60) -> None:
    ids = resolve_cqrs_ids()
    consume_until(
        transport,
        make_handler(ids),
        lambda: transport.broker.depth("replica") == 0 and in_sync(),
        cqrs_ids=ids,
        timeout=timeout,
    )


def product(name: str, **fields: Any) -> Product:
    values: dict[str, Any] = {
        "name": name,
        "quantity": 7,
        "price": decimal.Decimal("1234.50"),
        "release_date": datetime.date(2026, 12, 24),
        "published_at": datetime.datetime(2026, 11, 27, 9, 30, 0, 123456, tzinfo=UTC),
        "is_active": True,
        "note": None,
    }
    values.update(fields)
    return Product(**values)


def make_history() -> None:
    """A bit of everything a master does: creates, updates, deletes, bulk ops, syncs."""
    authors = [
        Author.objects.create(name=f"author {n}", email=f"a{n}@example.com") for n in range(6)
    ]
    for round_ in range(3):
        for author in authors[:4]:
            author.name = f"{author.name.split(' v')[0]} v{round_}"
            author.birth_date = datetime.date(1990, 1, 1 + round_)
            author.save()
    authors[4].delete()
    solo = product('Café "Grüße" a/b \\ ☃ 😀 <&>')
    solo.save()
    Product.cqrs.bulk_create(
        [product("Bulk A", price=decimal.Decimal("0.10")), product("Bulk B", note="b")]
    )
    Product.cqrs.bulk_update(Product.objects.filter(name__startswith="Bulk"), quantity=99)
    solo.price = decimal.Decimal("999.99")
    solo.is_active = False
    solo.save()
    Product.objects.filter(name="Bulk B").get().delete()
    Author.objects.get(pk=authors[0].pk).cqrs_sync()
    Author.objects.get(pk=authors[1].pk).cqrs_sync(queue="replica")
    Product.objects.get(pk=solo.pk).cqrs_sync()


def test_every_kind_of_change_replicates(memory_cqrs: MemoryTransport) -> None:
    make_history()
    # The background publisher thread sends (on PostgreSQL, MySQL, and on SQLite in the test
    # project's IMMEDIATE mode): wait for it before looking at the queue.
    assert background_publisher.flush(60)
    assert memory_cqrs.broker.depth("replica") > 0
    consume_until_in_sync(memory_cqrs)
    assert replica_state() == master_state()
    assert len(master_state()["author"]) == 5 and len(master_state()["product"]) == 2
    assert memory_cqrs.dead_letters() == []


def test_replica_keeps_up_while_the_master_writes(memory_cqrs: MemoryTransport) -> None:
    ids = resolve_cqrs_ids()
    ready = threading.Event()
    thread = threading.Thread(
        target=lambda: memory_cqrs.consume(make_handler(ids), cqrs_ids=ids, on_ready=ready.set)
    )
    thread.start()
    try:
        assert ready.wait(10)
        make_history()
        consume_until_in_sync(memory_cqrs)  # the running consumer and this one share the queue
    finally:
        memory_cqrs.stop()
        thread.join(30)
        connection.close()
    assert replica_state() == master_state()


def test_late_retry_of_a_deleted_row_and_recreation(memory_cqrs: MemoryTransport) -> None:
    author = Author.objects.create(name="first life")
    author.name = "first life, updated"
    author.save()
    events = drain(memory_cqrs)  # SAVE r0, SAVE r1
    pk = author.pk
    author.delete()
    Author.objects.create(id=pk, name="second life")
    later = drain(memory_cqrs)  # DELETE, SAVE r0 (second life)
    # The first life's update failed on the replica and its retry arrives last.
    memory_cqrs.produce_many([events[0], *later, events[1].retried()])
    consume_until_in_sync(memory_cqrs)
    assert AuthorRef.objects.get(pk=pk).name == "second life"


def drain(transport: MemoryTransport) -> list[TransportPayload]:
    """Take every waiting message off the replica queue, decoded, in arrival order."""
    assert background_publisher.flush(30)  # all that is committed has been published
    envelopes = transport.broker.take("replica", 100_000, 0, 0)
    return [codec.decode(e.body, queue=e.target, default_ttl=None) for e in envelopes]


def shuffled_twice(payloads: Sequence[TransportPayload], seed: int) -> list[TransportPayload]:
    deliveries = [*payloads, *payloads]
    random.Random(seed).shuffle(deliveries)
    return deliveries


def final_syncs() -> None:
    for author in Author.objects.all():
        author.cqrs_sync()
    for item in Product.objects.all():
        item.cqrs_sync(queue="replica")


@pytest.mark.parametrize("seed", [1, 2])
def test_shuffled_duplicated_deliveries_to_concurrent_consumers(
    memory_cqrs: MemoryTransport, settings: Any, seed: int
) -> None:
    settings.CQRS = {
        **settings.CQRS,
        "replica": {"CQRS_MAX_RETRIES": None, "CQRS_RETRY_DELAY": 0.01, "batch_size": 7},
    }
    make_history()
    final_syncs()  # SYNCs of the final state may arrive anywhere: they never roll back
    events = drain(memory_cqrs)
    assert len(events) > 30
    memory_cqrs.produce_many(shuffled_twice(events, seed))
    ids = resolve_cqrs_ids()
    consumers = [MemoryTransport(conf.transport_options()) for _ in range(4)]
    threads = [
        threading.Thread(target=_consume, args=(consumer, ids), name=f"consumer-{n}")
        for n, consumer in enumerate(consumers)
    ]
    for thread in threads:
        thread.start()
    try:
        consume_until_in_sync(memory_cqrs)
    finally:
        for consumer in consumers:
            consumer.stop()
        for thread in threads:
            thread.join(30)
    assert replica_state() == master_state()
    assert memory_cqrs.dead_letters() == []


def _consume(transport: MemoryTransport, ids: list[str]) -> None:
    try:
        transport.consume(make_handler(ids), cqrs_ids=ids)
    finally:
        transport.close()
        connection.close()


def test_threads_applying_shuffled_batches_of_the_same_rows(memory_cqrs: MemoryTransport) -> None:
    """Several threads each apply every event (shuffled, in random batches) at the same time."""
    make_history()
    final_syncs()
    events = drain(memory_cqrs)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        pending = shuffled_twice(events, seed)
        handler = make_handler()
        try:
            start.wait()
            while pending:
                size = rng.randint(1, 9)
                batch, pending = pending[:size], pending[size:]
                outcomes = handler(batch)
                assert [
                    o.kind.value for o in outcomes if o.kind.value not in ("applied", "retry")
                ] == []
                pending.extend(p for p, o in zip(batch, outcomes) if o.kind.value == "retry")
        except BaseException as exc:  # noqa: BLE001  (re-raised by the test thread)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert replica_state() == master_state()
