"""A save outside a transaction writes its row and its outbox row in one statement (PostgreSQL).

Elsewhere (SQLite, or a save this path cannot take) the save opens a transaction for both:
these tests check what is stored and sent either way, and on PostgreSQL how many statements.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cqrs_testproject.master_app.models import Author, FilteredItem, Product, Voucher
from cqrs_testproject.master_app.testing import use_recording
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from dj_cqrs.master.serialization import DEFERRED_KEY
from dj_cqrs.outbox import background_publisher
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.one_statement import PK_STAND_IN

pytestmark = pytest.mark.django_db(transaction=True)

ON_POSTGRESQL = connection.vendor == "postgresql"


@pytest.fixture
def recorder(settings: Any) -> Any:
    background_publisher.resume()
    yield from use_recording(settings, outbox={"grace": 0.0, "keep_days": 1})
    background_publisher.resume()


def sent(recorder: Any) -> list[dict[str, Any]]:
    assert background_publisher.flush(30)
    return [message.data for message in recorder.sent()]


def stored_bodies() -> list[dict[str, Any]]:
    return [json.loads(row.body) for row in OutboxEvent.objects.order_by("id")]


def statements(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"].split(" ", 1)[0] for query in queries.captured_queries]


def without_expires(body: dict[str, Any]) -> dict[str, Any]:
    """The body without what is set on send (the meta function gets the serialized data)."""
    volatile = ("expires", "instance_data", "meta")
    return {key: value for key, value in body.items() if key not in volatile}


def test_create_and_update_store_and_send_the_real_key_and_revision(recorder: Any) -> None:
    with CaptureQueriesContext(connection) as created:
        author = Author.objects.create(name="Ann")
    with CaptureQueriesContext(connection) as updated:
        author.name = "Bea"
        author.save()
    author.name = "Cid"
    author.save()

    assert author.cqrs_revision == 2
    bodies = stored_bodies()
    # Stored without the instance data: it is serialized when sent.
    assert [b["instance_data"] for b in bodies] == [{DEFERRED_KEY: "master_app.Author"}] * 3
    messages = sent(recorder)
    assert [(m["instance_pk"], m["instance_data"]["id"]) for m in messages] == [
        (author.pk,) * 2
    ] * 3
    assert [m["instance_data"]["cqrs_revision"] for m in messages] == [0, 1, 2]
    assert [m["instance_data"]["name"] for m in messages] == ["Ann", "Bea", "Cid"]
    assert [without_expires(m) for m in messages] == [without_expires(b) for b in bodies]
    assert str(PK_STAND_IN) not in json.dumps(bodies)
    if ON_POSTGRESQL:
        assert statements(created) == ["WITH"]
        assert statements(updated) == ["WITH"]
    else:
        assert statements(created)[0] == "BEGIN"


def test_tracked_fields_and_a_given_primary_key(recorder: Any) -> None:
    product = Product.objects.create(name="p", price="1.50")
    product.name = "q"
    product.save()
    voucher = Voucher.objects.create(code="V1")

    first, second, third = stored_bodies()
    assert first["previous_data"] == {"name": None}
    assert second["previous_data"] == {"name": "p"}
    assert third["instance_pk"] == str(voucher.pk)
    messages = sent(recorder)
    assert [m["instance_data"]["cqrs_revision"] for m in messages] == [0, 1, 0]


@pytest.mark.skipif(not ON_POSTGRESQL, reason="one statement is PostgreSQL's")
def test_user_data_holding_the_stand_in_is_untouched(recorder: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        author = Author.objects.create(name=str(PK_STAND_IN))
    assert statements(queries) == ["WITH"]  # the stored body holds no user data to confuse
    (body,) = stored_bodies()
    assert body["instance_pk"] == author.pk
    (message,) = sent(recorder)
    assert message["instance_data"]["name"] == str(PK_STAND_IN)  # the user's text is untouched


def correlation_of(signal_type: Any, cqrs_id: str, pk: Any, queue: str | None) -> str:
    return f"{cqrs_id}-{pk}"


@pytest.mark.skipif(not ON_POSTGRESQL, reason="one statement is PostgreSQL's")
def test_correlation_function_keeps_the_transaction(recorder: Any, settings: Any) -> None:
    master = {
        **settings.CQRS["master"],
        "correlation_function": correlation_of,
    }
    settings.CQRS = {**settings.CQRS, "master": master}
    with CaptureQueriesContext(connection) as queries:
        author = Author.objects.create(name="Ann")
    assert statements(queries)[0] == "BEGIN"
    assert sent(recorder)[0]["correlation_id"] == f"author-{author.pk}"


@pytest.mark.skipif(not ON_POSTGRESQL, reason="one statement is PostgreSQL's")
def test_a_failing_outbox_row_leaves_no_row_behind(recorder: Any) -> None:
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT no_authors CHECK (cqrs_id <> 'author')")
    try:
        with pytest.raises(IntegrityError):
            Author.objects.create(name="Ann")
        assert not Author.objects.exists()  # the row went with its outbox row
        product = Product.objects.create(name="p", price="1")  # other models still save
        product.name = "changed"
        with pytest.raises(IntegrityError):
            Author(id=product.pk, name="x").save()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT no_authors")
    assert not Author.objects.exists()
    assert [b["cqrs_id"] for b in sent(recorder)] == ["product"]


def test_fields_subset_and_all_tracked(recorder: Any) -> None:
    item = FilteredItem.objects.create(title="t")
    item.title = "u"
    item.save()
    first, second = sent(recorder)
    assert first["instance_data"] == {
        "id": item.pk,
        "title": "t",
        "cqrs_revision": 0,
        "cqrs_updated": first["instance_data"]["cqrs_updated"],
    }
    assert second["instance_data"]["cqrs_revision"] == 1
    assert second["previous_data"]["title"] == "t"


def test_a_failing_post_save_receiver_of_the_user_loses_no_event(
    recorder: Any,
) -> None:
    from django.db.models.signals import post_save

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver failed")

    author = Author.objects.create(name="Ann")
    post_save.connect(broken, sender=Author, dispatch_uid="broken-receiver")
    try:
        author.name = "Bea"
        with pytest.raises(RuntimeError):
            author.save()
    finally:
        post_save.disconnect(sender=Author, dispatch_uid="broken-receiver")
    author.name = "Cid"
    author.save()

    # Every committed state has its event, and only those. On PostgreSQL the save was one
    # statement and had committed when the receiver failed (as a plain Django save would
    # have); elsewhere the save's transaction rolled back with the receiver's error.
    committed = [("Ann", 0), ("Bea", 1), ("Cid", 2)] if ON_POSTGRESQL else [("Ann", 0), ("Cid", 1)]
    assert len(stored_bodies()) == len(committed)
    row = Author.objects.get()
    assert (row.name, row.cqrs_revision) == committed[-1]
    messages = sent(recorder)
    assert [
        (m["instance_data"]["name"], m["instance_data"]["cqrs_revision"]) for m in messages
    ] == (committed)


def test_f_expressions_of_the_user_are_sent_with_their_stored_values(recorder: Any) -> None:
    from django.db.models import F

    product = Product.objects.create(name="p", price="1.00", quantity=5)
    product.quantity = F("quantity") + 2
    product.save()
    assert product.quantity == 7  # read back, not left as an expression
    assert [m["instance_data"]["quantity"] for m in sent(recorder)] == [5, 7]


def test_delete_of_a_deferred_row_carries_its_next_revision(recorder: Any) -> None:
    author = Author.objects.create(name="Ann")
    for name in ("Bea", "Cid", "Dan"):
        author.name = name
        author.save()
    Author.objects.filter(pk=author.pk).only("id").delete()
    delete = stored_bodies()[-1]
    assert delete["signal_type"] == "DELETE"
    assert delete["instance_data"]["cqrs_revision"] == 4  # stored 3, plus 1
