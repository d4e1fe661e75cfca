"""Master events: one per instance per transaction, nothing on rollback, bulk ops, options."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from cqrs_testproject.master_app.models import (
    Author,
    FilteredItem,
    Product,
    ProductProxy,
    SilentItem,
    Ticket,
)
from cqrs_testproject.master_app.testing import use_recording
from django.db import IntegrityError, transaction
from django.db.models import F

from dj_cqrs.metas import MasterMeta
from dj_cqrs.outbox import background_publisher
from dj_cqrs.registries import MasterRegistry

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorder(settings: Any) -> Any:
    yield from use_recording(settings)


def bodies(recorder: Any) -> list[dict[str, Any]]:
    return [s.data for s in recorder.sent()]


def test_autocommit_save_publishes_at_once(recorder: Any) -> None:
    author = Author.objects.create(name="Ann", email="ann@example.com")
    [body] = bodies(recorder)
    assert body["signal_type"] == "SAVE"
    assert body["cqrs_id"] == "author"
    assert body["instance_pk"] == author.pk
    assert body["instance_data"]["name"] == "Ann"
    assert body["instance_data"]["cqrs_revision"] == 0
    assert body["meta"] == {}
    assert body["correlation_id"] is None
    assert body["retries"] == 0
    assert author.cqrs_saves_count == 0


def test_one_event_per_instance_per_transaction(recorder: Any) -> None:
    product = Product.objects.create(name="first", release_date=None)
    recorder.clear()
    with transaction.atomic():
        product.name = "second"
        product.save()
        assert product.cqrs_revision == 1
        assert product.cqrs_saves_count == 1 and product.is_initial_cqrs_save
        product.quantity = 5
        product.save()
        product.name = "third"
        product.save()
        assert product.cqrs_saves_count == 3 and not product.is_initial_cqrs_save
        assert recorder.sent() == []  # nothing before commit
    assert product.cqrs_revision == 1
    assert product.cqrs_saves_count == 0  # reset on commit
    assert len(recorder.batches) == 1
    [body] = bodies(recorder)
    assert body["instance_data"]["cqrs_revision"] == 1
    assert body["instance_data"]["name"] == "third"
    assert body["instance_data"]["quantity"] == 5
    assert body["previous_data"] == {"name": "first"}  # value before the transaction
    assert Product.objects.get(pk=product.pk).cqrs_revision == 1

    product.save()  # next transaction: next revision
    assert [b["instance_data"]["cqrs_revision"] for b in bodies(recorder)] == [1, 2]


def test_create_then_update_in_one_transaction_is_one_create(recorder: Any) -> None:
    with transaction.atomic():
        product = Product.objects.create(name="new")
        product.release_date = "2026-01-01"
        product.save()
    [body] = bodies(recorder)
    assert body["instance_data"]["cqrs_revision"] == 0
    # the first save of the transaction records previous_data, as in 3.x: the later
    # release_date change is not in it
    assert body["previous_data"] == {"name": None}


def test_rollback_publishes_nothing_and_keeps_revision(recorder: Any) -> None:
    author = Author.objects.create(name="Ann")
    recorder.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        author.name = "Bob"
        author.save()
        Author.objects.create(name="Carl")
        raise RuntimeError("boom")
    assert recorder.sent() == []
    assert Author.objects.get(pk=author.pk).cqrs_revision == 0
    author.refresh_from_db()
    author.save()  # counted again: the rolled-back transaction did not count
    [body] = bodies(recorder)
    assert body["instance_data"]["cqrs_revision"] == 1


def test_savepoint_rollback_drops_only_its_events(recorder: Any) -> None:
    author = Author.objects.create(name="Ann")
    recorder.clear()
    with transaction.atomic():
        Author.objects.create(name="kept")
        try:
            with transaction.atomic():
                author.name = "lost"
                author.save()
                raise IntegrityError("simulated")
        except IntegrityError:
            pass
    assert [b["instance_data"]["name"] for b in bodies(recorder)] == ["kept"]
    assert Author.objects.get(pk=author.pk).cqrs_revision == 0


def test_savepoint_levels_give_increasing_revisions(recorder: Any) -> None:
    author = Author.objects.create(name="v0")
    recorder.clear()
    with transaction.atomic():
        author.name = "v1"
        author.save()
        with transaction.atomic():
            author.name = "v2"
            author.save()
    revisions = [
        (b["instance_data"]["name"], b["instance_data"]["cqrs_revision"]) for b in bodies(recorder)
    ]
    # One event per savepoint level, each serialized at commit as django-cqrs does: both carry
    # the committed state; replicas apply revision 2 once.
    assert revisions == [("v2", 2), ("v2", 2)]
    assert Author.objects.get(pk=author.pk).cqrs_revision == 2


def test_many_saves_in_one_transaction_are_one_batch(recorder: Any) -> None:
    with transaction.atomic():
        for i in range(25):
            Author.objects.create(name=f"a{i}")
    assert len(recorder.batches) == 1
    assert len(recorder.batches[0]) == 25


def test_update_fields_without_cqrs_fields_publishes_nothing(recorder: Any) -> None:
    author = Author.objects.create(name="Ann")
    recorder.clear()
    author.name = "Bob"
    author.save(update_fields=["name"])
    assert recorder.sent() == []
    assert Author.objects.get(pk=author.pk).cqrs_revision == 0

    author.email = "bob@example.com"
    author.save(update_fields=["email"], update_cqrs_fields=True)
    [body] = bodies(recorder)
    assert body["instance_data"]["cqrs_revision"] == 1
    assert Author.objects.get(pk=author.pk).email == "bob@example.com"


def test_auto_update_fields_setting(settings: Any) -> None:
    gen = use_recording(settings, CQRS_AUTO_UPDATE_FIELDS=True)
    recorder = next(gen)
    try:
        author = Author.objects.create(name="Ann")
        author.name = "Bob"
        author.save(update_fields=["name"])
        assert [b["instance_data"]["cqrs_revision"] for b in bodies(recorder)] == [0, 1]
    finally:
        gen.close()


def test_cqrs_produce_false_sends_nothing(recorder: Any) -> None:
    item = SilentItem.objects.create(title="x")
    item.save()
    item.delete()
    assert item.cqrs_sync() is False
    assert recorder.sent() == []


def test_cqrs_fields_subset_and_all_tracked(recorder: Any) -> None:
    item = FilteredItem.objects.create(title="t", secret="s")
    item.title = "t2"
    item.secret = "s2"
    item.save()
    first, second = bodies(recorder)
    assert list(first["instance_data"]) == ["id", "title", "cqrs_revision", "cqrs_updated"]
    # '__all__' tracks cqrs_revision too (3.x): its old value is sent
    assert second["previous_data"] == {"title": "t", "secret": "s", "cqrs_revision": 0}


def test_sync_respects_is_sync_instance(recorder: Any) -> None:
    item = FilteredItem.objects.create(title="t", syncable=False)
    recorder.clear()
    assert item.cqrs_sync() is False
    assert recorder.sent() == []


def test_sync_in_transaction_waits_for_commit(recorder: Any) -> None:
    author = Author.objects.create(name="Ann")
    recorder.clear()
    with transaction.atomic():
        assert author.cqrs_sync(queue="billing") is True
        assert recorder.sent() == []
    [sent] = recorder.sent()
    assert sent.routing_key == "cqrs.billing.author"
    assert sent.data["signal_type"] == "SYNC"
    assert sent.data["instance_data"]["cqrs_revision"] == 0


def test_delete_revision_and_custom_data(recorder: Any) -> None:
    ticket = Ticket.objects.create(subject="s")
    ticket.save()
    Ticket.objects.filter(pk=ticket.pk).delete()  # queryset delete sends post_delete too
    body = bodies(recorder)[-1]
    assert body["signal_type"] == "DELETE"
    assert body["instance_data"]["cqrs_revision"] == 2
    assert body["instance_data"]["custom"]["subject"] == "s"


def test_bulk_create_and_update_in_one_batch_each(recorder: Any) -> None:
    made = Product.cqrs.bulk_create([Product(name=f"p{i}") for i in range(3)])
    assert all(p.pk for p in made)
    assert [len(b) for b in recorder.batches] == [3]
    recorder.clear()
    count = Product.cqrs.bulk_update(
        Product.objects.filter(name__startswith="p"), name="renamed", quantity=F("quantity") + 2
    )
    assert count == 3
    sent = bodies(recorder)
    assert [b["instance_data"]["cqrs_revision"] for b in sent] == [1, 1, 1]
    assert {b["instance_data"]["name"] for b in sent} == {"renamed"}
    assert {b["instance_data"]["quantity"] for b in sent} == {2}
    assert [b["previous_data"]["name"] for b in sent] == ["p0", "p1", "p2"]
    assert all(p.cqrs_revision == 1 for p in Product.objects.all())


def test_bulk_update_rolled_back_sends_nothing(recorder: Any) -> None:
    Product.objects.create(name="p")
    recorder.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        Product.cqrs.bulk_update(Product.objects.all(), name="x")
        raise RuntimeError
    assert recorder.sent() == []
    assert Product.objects.get().cqrs_revision == 0


def test_broker_failure_after_commit_is_logged_not_raised(
    recorder: Any, caplog: Any, settings: Any
) -> None:
    # The old behaviour (no outbox): the event is lost and logged. test_outbox_* cover the outbox.
    settings.CQRS = {
        **settings.CQRS,
        "master": {**settings.CQRS.get("master", {}), "publish": "on_commit"},
    }
    recorder.fail_next = 2  # the publish and its retry both fail
    with caplog.at_level(logging.WARNING, logger="django-cqrs"), transaction.atomic():
        author = Author.objects.create(name="Ann")
    assert Author.objects.filter(pk=author.pk).exists()
    assert recorder.sent() == []
    errors = [r for r in caplog.records if r.name == "django-cqrs" and r.levelno == logging.ERROR]
    assert errors and f"SAVE:author:{author.pk}" in errors[0].getMessage()


def test_broker_failure_is_retried_once(recorder: Any) -> None:
    recorder.fail_next = 1
    Author.objects.create(name="Ann")
    assert len(bodies(recorder)) == 1


def test_unknown_transport_after_commit_is_logged_not_raised(settings: Any, caplog: Any) -> None:
    settings.CQRS = {"transport": "no_such_transport", "queue": "q"}
    with caplog.at_level(logging.ERROR, logger="django-cqrs"):
        Author.objects.create(name="Ann")
        assert background_publisher.flush(30)  # the publisher thread logs it
    assert any(
        "no_such_transport" in r.getMessage() or "no_such_transport" in str(r.exc_info)
        for r in caplog.records
    )


def test_proxy_publishes_under_its_id_and_registers_only_explicitly(recorder: Any) -> None:
    assert MasterRegistry.get_model_by_cqrs_id("product_proxy") is None
    ProductProxy.objects.create(name="via proxy")
    [body] = bodies(recorder)
    assert body["cqrs_id"] == "product_proxy"
    try:
        MasterMeta.register(ProductProxy)
        assert MasterRegistry.get_model_by_cqrs_id("product_proxy") is ProductProxy
    finally:
        from dj_cqrs.registries import _masters

        _masters.unregister("product_proxy")


def test_meta_skips_abstract_and_supports_diamonds() -> None:
    from django.db import models
    from django.test.utils import isolate_apps

    from dj_cqrs.mixins import MasterMixin
    from dj_cqrs.registries import _masters

    with isolate_apps("cqrs_testproject.master_app"):

        class Stamped(MasterMixin):
            CQRS_ID = "abstract_never"
            stamp = models.IntegerField(default=0)

            class Meta:
                abstract = True

        class Named(MasterMixin):
            name = models.CharField(max_length=10)

            class Meta:
                abstract = True

        class Diamond(Stamped, Named):
            CQRS_ID = "diamond"

            class Meta:
                app_label = "master_app"

        try:
            assert MasterRegistry.get_model_by_cqrs_id("abstract_never") is None
            assert MasterRegistry.get_model_by_cqrs_id("diamond") is Diamond
            names = [f.name for f in Diamond._meta.concrete_fields]
            assert {"cqrs_revision", "cqrs_updated", "stamp", "name"} <= set(names)
            assert names.count("cqrs_revision") == 1
        finally:
            _masters.unregister("diamond")


def test_uuid_tracked_value_and_to_cqrs_dict_types() -> None:
    product = Product(name="n", external_uuid=uuid.UUID(int=1))
    product.save()
    data = product.to_cqrs_dict()
    assert data["external_uuid"] == str(uuid.UUID(int=1))
    assert isinstance(data["cqrs_updated"], str)
    assert list(data)[:3] == ["id", "cqrs_revision", "cqrs_updated"]
