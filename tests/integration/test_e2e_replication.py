"""Master → broker → `manage.py cqrs_consume` subprocess → replica tables, on every transport.

The master is this process (pytest-django, `transaction=True`, so commits really happen and the
events leave after commit, through the outbox fast path when it is on). The replica is a real
`cqrs_consume` process on the same database. Each test ends when the replica tables equal the
master tables (or fails after a hang guard, showing the consumer's output).
"""

from __future__ import annotations

import datetime
import decimal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from e2e_support import (
    Replication,
    differences,
    duplicated_applications,
    master_state,
    replica_state,
    sqlite_copy,
    sqlite_rows,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(240)]

UTC = datetime.timezone.utc
ROWS = 120


def product(n: int) -> Any:
    from cqrs_testproject.master_app.models import Product

    return Product(
        name=f'product {n} "ü/☃"',
        quantity=n,
        price=decimal.Decimal("1234.50") + n,
        release_date=datetime.date(2026, 12, 24),
        published_at=datetime.datetime(2026, 11, 27, 9, 30, 0, 123456, tzinfo=UTC),
        note=None if n % 2 else f"note {n}",
    )


def in_sync() -> bool:
    return master_state() == replica_state()


def test_save_delete_bulk_tracked_and_meta_replicate(replication: Replication) -> None:
    from cqrs_testproject.master_app.models import Author, Product, Tally
    from cqrs_testproject.replica_app.models import AuthorRef, ProductRef, TallyRef

    replication.consumer()
    # SAVE (create), in a few commits
    with transaction.atomic():
        authors = [
            Author.objects.create(name=f"author {n}", email=f"a{n}@example.com") for n in range(20)
        ]
    with transaction.atomic():
        tallies = [Tally.objects.create(name=f"tally {n}", value=n) for n in range(ROWS)]
    # bulk_create, then bulk_update (a SAVE per row, revision + 1)
    Product.cqrs.bulk_create([product(n) for n in range(ROWS)])
    updated = Product.cqrs.bulk_update(Product.objects.filter(quantity__lt=ROWS // 2), quantity=7)
    assert updated == ROWS // 2
    # SAVE (update), tracked fields: previous values travel with the event
    renamed = {}
    for item in Product.objects.order_by("pk")[:10]:
        renamed[item.pk] = item.name
        item.name = f"{item.name} renamed"
        item.save()
    with transaction.atomic():
        for tally in tallies[:40]:
            tally.value += 1000
            tally.save()
    for author in authors[:10]:
        author.name = f"{author.name} v2"
        author.birth_date = datetime.date(1990, 1, 2)
        author.save()
    # DELETE
    for author in authors[15:]:
        author.delete()
    for tally in tallies[-10:]:
        tally.delete()

    replication.wait_until(in_sync, "replica == master")

    state = master_state()
    assert len(state["author"]) == 15 and len(state["tally"]) == ROWS - 10
    assert len(state["product"]) == ROWS
    assert differences(state, replica_state()) == {}
    # tracked fields reached the replica (previous_data)
    previous = dict(
        TallyRef.objects.filter(pk__in=[t.pk for t in tallies[:40]]).values_list(
            "pk", "previous_value"
        )
    )
    assert previous == {t.pk: t.value - 1000 for t in tallies[:40]}
    assert set(
        TallyRef.objects.exclude(pk__in=previous).values_list("previous_value", flat=True)
    ) == {None}
    assert (
        dict(ProductRef.objects.filter(pk__in=renamed).values_list("pk", "previous_title"))
        == renamed
    )
    # meta (AuthorRef has CQRS_META) as the master's meta_function made it
    metas = list(AuthorRef.objects.values_list("last_meta", flat=True))
    assert len(metas) == 15
    assert all(
        meta == {"service": "golden-master", "model": "Author", "signal_type": "SAVE", "version": 1}
        for meta in metas
    ), metas[:3]
    assert replication.transport().dead_letters() == []
    assert duplicated_applications() == 0


def _set_names(path: str | None, pks: list[int], name: str) -> None:
    """Corrupt replica rows behind the consumer's back (a SYNC repairs them)."""
    if path is None:
        from cqrs_testproject.replica_app.models import AuthorRef

        AuthorRef.objects.filter(pk__in=pks).update(name=name)
        return
    connection = sqlite3.connect(path, timeout=30)
    with connection:
        connection.executemany(
            "UPDATE replica_app_authorref SET name = ? WHERE id = ?", [(name, pk) for pk in pks]
        )
    connection.close()


def _names(path: str | None) -> dict[int, str]:
    if path is None:
        from cqrs_testproject.replica_app.models import AuthorRef

        return dict(AuthorRef.objects.values_list("pk", "name"))
    return dict(sqlite_rows(path, "SELECT id, name FROM replica_app_authorref"))


def test_broadcast_sync_reaches_every_replica_and_directed_sync_one(
    replication: Replication, tmp_path: Path
) -> None:
    """Two replica services (own queue, own database): A on the test DB, B on a copy."""
    from cqrs_testproject.master_app.models import Author

    db_b = sqlite_copy(tmp_path / "replica_b.sqlite3")
    queue_b = replication.backend.other_queue()
    replication.consumer()
    consumer_b = replication.consumer(db_name=db_b, queue=queue_b)
    with transaction.atomic():
        authors = [Author.objects.create(name=f"author {n}") for n in range(10)]
    expected = {a.pk: a.name for a in authors}
    replication.wait_until(lambda: _names(None) == expected, "replica A has the authors")
    replication.wait_until(lambda: _names(db_b) == expected, "replica B has the authors")

    broadcast, directed = authors[0].pk, authors[1].pk
    for path in (None, db_b):
        _set_names(path, [broadcast, directed], "tampered")
    Author.objects.get(pk=broadcast).cqrs_sync()
    Author.objects.get(pk=directed).cqrs_sync(queue=replication.backend.queue)
    marker = Author.objects.create(name="marker, sent after the SYNCs")
    expected[marker.pk] = marker.name

    replication.wait_until(lambda: _names(None) == expected, "replica A repaired by both SYNCs")
    expected_b = {**expected, directed: "tampered"}
    replication.wait_until(lambda: _names(db_b) == expected_b, "replica B repaired by broadcast")
    time.sleep(1)  # let a misrouted directed SYNC (there must be none) reach B
    assert consumer_b.stop() == 0
    assert _names(db_b) == expected_b, "the SYNC directed to A was applied by B"
    assert differences(master_state(), replica_state()) == {}
