"""django-cqrs 3.x model structure: RawMasterMixin without metaclass, MasterMeta.register for
diamond inheritance (django-mptt), tracked fields, save counters and the meta function's
arguments. Expected dicts are those upstream 3.1.0 produced for the same steps."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cqrs_testproject.master_app.models import (
    Author,
    Node,
    Product,
    Shelf,
    SilentItem,
    TrackedAll,
    TrackedListed,
)
from cqrs_testproject.master_app.testing import use_recording
from django.db import models, transaction
from django.db.models.base import ModelBase

from dj_cqrs.constants import FIELDS_TRACKER_FIELD_NAME, TRACKED_FIELDS_ATTR_NAME
from dj_cqrs.metas import MasterMeta
from dj_cqrs.mixins import MasterMixin, RawMasterMixin
from dj_cqrs.registries import MasterRegistry
from dj_cqrs.tracker import CQRSTracker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorder(settings: Any) -> Any:
    yield from use_recording(settings)


def bodies(recorder: Any) -> list[dict[str, Any]]:
    return [s.data for s in recorder.sent()]


# -- structure -----------------------------------------------------------------------------


def test_raw_master_mixin_has_no_custom_metaclass() -> None:
    assert type(RawMasterMixin) is ModelBase
    assert type(MasterMixin) is MasterMeta
    names = {f.name for f in RawMasterMixin._meta.fields}
    assert {"cqrs_revision", "cqrs_updated"} <= names  # RawMasterMixin declares them (3.x)


def test_diamond_model_is_registered_once_and_register_is_idempotent() -> None:
    assert MasterRegistry.get_model_by_cqrs_id("mptt_node") is Node
    assert MasterMeta.register(Node) is Node
    assert MasterRegistry.get_model_by_cqrs_id("mptt_node") is Node
    with pytest.raises(TypeError, match="RawMasterMixin"):
        MasterMeta.register(Shelf)


def test_a_raw_model_is_not_registered_until_register_is_called() -> None:
    class Unregistered(RawMasterMixin):
        CQRS_ID = "legacy_unregistered"

        class Meta:
            app_label = "master_app"

    try:
        assert MasterRegistry.get_model_by_cqrs_id("legacy_unregistered") is None
        MasterMeta.register(Unregistered)
        assert MasterRegistry.get_model_by_cqrs_id("legacy_unregistered") is Unregistered
    finally:
        MasterRegistry._registry.unregister("legacy_unregistered")
        models.signals.post_save.disconnect(sender=Unregistered, dispatch_uid="dj_cqrs.master")


def test_mptt_node_publishes_saves_moves_deletes_syncs_and_bulk_updates(recorder: Any) -> None:
    a = Node.objects.create(name="a")
    b = Node.objects.create(name="b")
    c = Node.objects.create(name="c", parent=a)
    created = bodies(recorder)
    assert [(x["signal_type"], x["cqrs_id"], x["instance_pk"]) for x in created] == [
        ("SAVE", "mptt_node", a.pk),
        ("SAVE", "mptt_node", b.pk),
        ("SAVE", "mptt_node", c.pk),
    ]
    assert created[2]["instance_data"]["parent"] == a.pk
    assert created[2]["instance_data"]["cqrs_revision"] == 0
    assert created[2]["previous_data"] == {"name": None, "parent_id": None}
    recorder.clear()

    c.parent = b
    c.save()  # django-mptt moves the node; it rewrites lft/rght of other rows with .update()
    [moved] = bodies(recorder)  # as in 3.x, only the saved node publishes
    assert moved["instance_pk"] == c.pk
    assert moved["instance_data"]["parent"] == b.pk
    assert moved["instance_data"]["cqrs_revision"] == 1
    assert moved["previous_data"] == {"parent": a.pk}
    stored = Node.objects.get(pk=c.pk)
    assert (stored.parent_id, stored.cqrs_revision) == (b.pk, 1)
    assert [n.name for n in b.get_children()] == ["c"]
    recorder.clear()

    assert b.cqrs_sync(queue="billing") is True
    [synced] = recorder.sent()
    assert synced.routing_key == "cqrs.billing.mptt_node"
    assert synced.data["signal_type"] == "SYNC"
    recorder.clear()

    assert Node.cqrs.bulk_update(Node.objects.filter(pk=a.pk), name="a2") == 1
    [bulk] = bodies(recorder)
    assert bulk["instance_data"]["name"] == "a2"
    assert bulk["previous_data"] == {"name": "a", "parent_id": None}
    recorder.clear()

    Node.objects.get(pk=b.pk).delete()  # the child c goes with it: two DELETEs
    deleted = bodies(recorder)
    assert sorted((x["signal_type"], x["instance_pk"]) for x in deleted) == [
        ("DELETE", b.pk),
        ("DELETE", c.pk),
    ]


# -- tracked fields ------------------------------------------------------------------------


@pytest.mark.parametrize("model", [TrackedAll, TrackedListed])
def test_previous_data_is_the_same_for_all_and_for_every_field_listed(
    recorder: Any, model: Any
) -> None:
    first, second = Shelf.objects.create(name="s1"), Shelf.objects.create(name="s2")
    item = model.objects.create(title="t", day=datetime.date(2026, 1, 2), shelf=first)
    created = item.get_tracked_fields_data()
    # upstream: foreign keys by attname on a create, no pk (not set yet), no cqrs_updated (set
    # by the save), nothing for fields that are None
    assert created == {"title": None, "day": None, "shelf_id": None, "cqrs_revision": None}

    item.title, item.day, item.shelf = "t2", datetime.date(2026, 2, 3), second
    item.save()
    updated = item.get_tracked_fields_data()
    assert updated == {"title": "t", "day": "2026-01-02", "shelf": first.pk, "cqrs_revision": 0}

    item.save()
    assert item.get_tracked_fields_data() == {"cqrs_revision": 1}
    assert [x["previous_data"] for x in bodies(recorder)] == [
        created,
        updated,
        {"cqrs_revision": 1},
    ]


def test_untracked_model_sends_null_and_tracked_unchanged_sends_empty(recorder: Any) -> None:
    author = Author.objects.create(name="a")
    product = Product.objects.create(name="p")
    product.quantity = 3  # not tracked
    product.save()
    assert author.get_tracked_fields_data() is None
    assert product.get_tracked_fields_data() == {}
    assert [x["previous_data"] for x in bodies(recorder)] == [None, {"name": None}, {}]


def test_partial_and_deferred_saves_compare_with_what_was_saved(recorder: Any) -> None:
    item = TrackedAll.objects.create(title="x", day=datetime.date(2026, 1, 2))
    item.title = "y"
    item.save(update_fields=["title"])  # publishes nothing, but records and remembers `title`
    assert item.get_tracked_fields_data() == {"title": "x"}
    item.day = None
    item.save()
    assert item.get_tracked_fields_data() == {"day": "2026-01-02", "cqrs_revision": 0}

    deferred = TrackedAll.objects.only("id").get(pk=item.pk)
    deferred.title = "z"
    deferred.save()  # title and cqrs_revision were not loaded: compared with the stored row
    assert deferred.get_tracked_fields_data() == {"title": "y", "cqrs_revision": 1}


def test_bulk_create_records_the_create_previous_data(recorder: Any) -> None:
    shelf = Shelf.objects.create(name="s")
    TrackedAll.cqrs.bulk_create([TrackedAll(title="b", shelf=shelf)])
    [body] = bodies(recorder)
    assert body["previous_data"] == {"title": None, "shelf_id": None, "cqrs_revision": None}


def test_bulk_update_sends_every_tracked_value_by_attname(recorder: Any) -> None:
    shelf = Shelf.objects.create(name="s")
    item = TrackedAll.objects.create(title="x", shelf=shelf, day=datetime.date(2026, 1, 2))
    recorder.clear()
    TrackedAll.cqrs.bulk_update(TrackedAll.objects.filter(pk=item.pk), title="y")
    [body] = bodies(recorder)
    previous = body["previous_data"]
    assert previous == {
        "id": item.pk,
        "title": "x",
        "day": "2026-01-02",
        "shelf_id": shelf.pk,
        "note": None,
        "cqrs_revision": 0,
        "cqrs_updated": str(item.cqrs_updated),
    }


def test_the_3x_tracker_names() -> None:
    item = TrackedAll(title="t")
    tracker = getattr(item, FIELDS_TRACKER_FIELD_NAME)
    assert tracker.fields == {
        "id",
        "title",
        "day",
        "shelf_id",
        "note",
        "cqrs_revision",
        "cqrs_updated",
    }
    assert tracker.changed_initial() == {"title": None, "cqrs_revision": None}
    assert not hasattr(Author(), FIELDS_TRACKER_FIELD_NAME)  # no tracked fields, no tracker
    assert isinstance(RawMasterMixin.__dict__[FIELDS_TRACKER_FIELD_NAME], CQRSTracker)
    item.save()
    assert item.__dict__[TRACKED_FIELDS_ATTR_NAME] == item.get_tracked_fields_data()
    item.title = "u"
    assert tracker.changed() == {"title": "t"}


# -- save counters ---------------------------------------------------------------------------


def test_saves_count_within_a_transaction_and_outside(recorder: Any) -> None:
    item = SilentItem.objects.create(title="x")  # never publishes: nothing resets it on commit
    assert item.cqrs_saves_count == 0  # autocommit: not counted (3.x)
    with transaction.atomic():
        item.save()
        assert (item.cqrs_saves_count, item.is_initial_cqrs_save) == (1, True)
        item.save()
        assert (item.cqrs_saves_count, item.is_initial_cqrs_save) == (2, False)
    author = Author.objects.create(name="a")
    with transaction.atomic():
        author.save()
        author.save()
        assert author.cqrs_saves_count == 2
    assert author.cqrs_saves_count == 0  # reset when its event is sent at commit
    with pytest.raises(RuntimeError), transaction.atomic():
        author.save()
        raise RuntimeError("rollback")
    assert author.cqrs_saves_count == 1  # a rollback does not reset it (3.x) ...
    author.reset_cqrs_saves_count()  # ... the user does
    assert (author.cqrs_saves_count, author.is_initial_cqrs_save) == (0, True)


# -- meta function ---------------------------------------------------------------------------


def test_meta_function_gets_the_3x_keywords(settings: Any) -> None:
    calls: list[dict[str, Any]] = []

    def meta(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"n": len(calls)}

    gen = use_recording(settings, meta_function=meta)
    recorder = next(gen)
    try:
        product = Product.objects.create(name="p")
        product.name = "q"
        product.save()
        product.cqrs_sync()
        product.delete()
        sent = bodies(recorder)
    finally:
        gen.close()
    # SAVE and SYNC metas are made when their data is serialized (3.x: at commit; here in the
    # background publisher), so match each call to its message by the number it returned
    assert [b["signal_type"] for b in sent] == ["SAVE", "SAVE", "SYNC", "DELETE"]
    for body in sent:
        call = calls[body["meta"]["n"] - 1]
        expected = {"instance_data", "obj", "previous_data", "signal_type"}
        if body["signal_type"] == "DELETE":
            expected.discard("previous_data")  # 3.x gives a DELETE no previous_data
        assert set(call) == expected
        assert call["signal_type"] == body["signal_type"]
        assert isinstance(call["obj"], Product)
        assert call["instance_data"] == body["instance_data"]  # the real data, no placeholder
        assert call.get("previous_data") == body["previous_data"]
    assert len(calls) == 4
    assert [b["previous_data"] for b in sent] == [
        {"name": None},
        {"name": "p"},
        {"name": "p"},
        None,
    ]
