"""MySQL/MariaDB locking: what two workers or two relays do to each other on InnoDB.

Run with CQRS_TEST_DB=mysql (the third phase of `hatch test`); skipped on other databases.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cqrs_replica_models import Item
from django.db import connection, transaction
from django.db.models import signals
from django.utils import timezone
from replica_support import data, payload

from dj_cqrs.consumer import make_handler
from dj_cqrs.outbox import rows
from dj_cqrs.outbox.models import OutboxEvent

pytestmark = [
    pytest.mark.skipif(connection.vendor != "mysql", reason="MySQL/MariaDB only"),
    pytest.mark.django_db(transaction=True),
]

DEADLINE = 30.0


def outbox_rows(count: int) -> list[int]:
    now = timezone.now()
    OutboxEvent.objects.bulk_create(
        OutboxEvent(
            cqrs_id="author", instance_pk=str(n), signal_type="SAVE", body="{}", created_at=now
        )
        for n in range(count)
    )
    return sorted(OutboxEvent.objects.values_list("id", flat=True))


@pytest.mark.parametrize("keep_days", [0, 1])
def test_marking_a_batch_sent_does_not_wait_for_the_rows_of_another_relay(keep_days: int) -> None:
    """Two relays hold interleaved rows (odd and even). Marking a batch with `id IN (...)` ran
    as a range scan that also locked the other relay's rows in between: relays deadlocked,
    rolled back their published batches and sent them again."""
    ids = outbox_rows(60)
    mine, theirs = ids[0:50:2], ids[1:50:2]
    held, release = threading.Event(), threading.Event()

    def other_relay() -> None:
        try:
            with transaction.atomic():
                list(OutboxEvent.objects.select_for_update().filter(id__in=theirs))
                held.set()
                release.wait(DEADLINE)
        finally:
            connection.close()

    thread = threading.Thread(target=other_relay, daemon=True)
    thread.start()
    try:
        assert held.wait(DEADLINE)
        with connection.cursor() as cursor:  # fail fast instead of waiting 50 s
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 2")
        with transaction.atomic():
            list(OutboxEvent.objects.select_for_update().filter(id__in=mine))
            assert rows.mark_sent("default", mine[::-1], keep_days) == len(mine)
    finally:
        release.set()
        thread.join(DEADLINE)
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = DEFAULT")
    pending = set(OutboxEvent.objects.filter(sent_at__isnull=True).values_list("id", flat=True))
    assert pending == set(ids) - set(mine)


@pytest.fixture
def repeatable_read() -> Iterator[None]:
    """New connections (the worker threads') run at REPEATABLE READ, as when DATABASES sets
    `"isolation_level": "repeatable read"` (or None: the server's default)."""
    wanted = {"isolation_level": "repeatable read"}
    original = connection.settings_dict["OPTIONS"]
    connection.settings_dict["OPTIONS"] = {**original, **wanted}
    try:
        yield
    finally:
        connection.settings_dict["OPTIONS"] = original


def test_two_workers_creating_new_rows_in_one_gap_do_not_deadlock(repeatable_read: None) -> None:
    """Both workers read their missing row FOR UPDATE, then insert it. At REPEATABLE READ the
    reads lock the gap both keys fall in and each insert waits for the other's gap lock."""
    both_read = threading.Barrier(2, timeout=DEADLINE)

    def wait_for_the_other(sender: Any, **kwargs: Any) -> None:
        both_read.wait()

    outcomes: dict[int, list[str]] = {}
    levels: dict[int, str] = {}

    def worker(pk: int) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT @@tx_isolation")
                levels[pk] = cursor.fetchone()[0]
            handler = make_handler()
            outcomes[pk] = [
                o.kind.value for o in handler([payload("item", data(pk, 0, 0, name=f"n{pk}"))])
            ]
        finally:
            connection.close()

    signals.pre_save.connect(wait_for_the_other, sender=Item)  # after the read, before INSERT
    try:
        threads = [threading.Thread(target=worker, args=(pk,), daemon=True) for pk in (10, 11)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE * 2)
    finally:
        signals.pre_save.disconnect(wait_for_the_other, sender=Item)
    assert levels == {10: "REPEATABLE-READ", 11: "REPEATABLE-READ"}  # the connections' level
    assert outcomes == {10: ["applied"], 11: ["applied"]}
    assert sorted(Item.objects.values_list("pk", flat=True)) == [10, 11]
