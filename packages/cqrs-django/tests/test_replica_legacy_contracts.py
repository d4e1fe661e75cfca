"""django-cqrs 3.x contracts that projects rely on: how hooks are called, what the public
replica methods return on failure, and the shape of the registries."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from cqrs_replica_models import Item
from cqrs_testproject.master_app.models import Author
from cqrs_testproject.replica_app.models import KwargsHooksRef, KwargsMetaRef
from django.db import transaction
from replica_support import at, data, payload

from cqrs_core.constants import SignalType
from cqrs_core.exceptions import ConfigurationError
from cqrs_core.registries import DuplicateCQRSId
from dj_cqrs.consumer import make_handler
from dj_cqrs.registries import MasterRegistry, ReplicaRegistry
from dj_cqrs.replica.batch import supports_bulk


def kinds(outcomes: Any) -> list[str]:
    return [outcome.kind.value for outcome in outcomes]


# -- item 8: hooks get django-cqrs's keywords, on both apply paths -----------------------------


@pytest.fixture(name="bulk")
def bulk_fixture(request: pytest.FixtureRequest, settings: Any) -> bool:
    settings.CQRS = {
        **settings.CQRS,
        "replica": {**settings.CQRS.get("replica", {}), "CQRS_BULK_APPLY": request.param},
    }
    return bool(request.param)


@pytest.mark.django_db
@pytest.mark.parametrize("bulk", [True, False], ids=["bulk-on", "bulk-off"], indirect=True)
@pytest.mark.parametrize("model", [KwargsHooksRef, KwargsMetaRef], ids=["no-meta", "meta"])
def test_kwargs_hooks_get_keywords_as_in_3x(model: Any, bulk: bool) -> None:
    model.calls.clear()
    cqrs_id = model.CQRS_ID
    meta = {"trace": "t1"}
    batch = [
        payload(cqrs_id, data(1, 0, 0, name="a"), meta=meta),
        payload(cqrs_id, data(2, 0, 0, name="b"), SignalType.SYNC, meta=meta),
        payload(cqrs_id, data(1, 1, 1, name="a2"), previous_data={"name": "a"}, meta=meta),
        payload(cqrs_id, data(2, 1, 2), SignalType.DELETE, meta=meta),
    ]
    assert not supports_bulk(model)  # overridden hooks: never the bulk statements
    # The whole batch (what the bulk path is given), then each message alone.
    assert kinds(make_handler()(batch[:2])) == ["applied", "applied"]
    for message in batch[2:]:
        assert kinds(make_handler()([message])) == ["applied"]

    extra = {"meta": meta} if model.CQRS_META else {}
    assert model.calls == [
        ("save", 1, {"previous_data": None, **extra}),  # SAVE: no `sync` keyword
        ("create", False, {"previous_data": None, **extra}),
        ("save", 2, {"previous_data": None, "sync": True, **extra}),
        ("create", True, {"previous_data": None, **extra}),
        ("save", 1, {"previous_data": {"name": "a"}, **extra}),
        ("update", False, {"previous_data": {"name": "a"}, **extra}),
        ("delete", 2, extra),
    ]
    assert list(model.objects.values_list("pk", "name", "cqrs_revision")) == [(1, "a2", 1)]


@pytest.mark.django_db
def test_direct_calls_pass_keywords_and_no_meta_without_cqrs_meta() -> None:
    KwargsHooksRef.calls.clear()
    KwargsHooksRef.cqrs_save(data(5, 0, 0, name="x"), meta={"ignored": True})
    KwargsHooksRef.cqrs.update_instance(
        KwargsHooksRef.objects.get(pk=5),
        {"id": 5, "name": "y", "cqrs_revision": 1, "cqrs_updated": at(1)},
        {"name": "x"},
    )
    assert KwargsHooksRef.calls == [
        ("save", 5, {"meta": {"ignored": True}}),
        ("create", False, {"previous_data": None}),
        ("update", False, {"previous_data": {"name": "x"}}),
    ]


# -- item 9: public methods log and return None/False; the consumer still gets the reason ----


BAD_SAVES = [
    pytest.param({"id": 1, "cqrs_updated": str(at(0)), "name": "x"}, "cqrs_revision", id="rev"),
    pytest.param({"id": 1, "cqrs_revision": 0, "name": "x"}, "cqrs_updated", id="updated"),
    pytest.param({"cqrs_revision": 0, "cqrs_updated": str(at(0)), "name": "x"}, "id", id="pk"),
    pytest.param({"id": 1, "cqrs_revision": 0, "cqrs_updated": str(at(0))}, "name", id="field"),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("values", "reason"), BAD_SAVES)
def test_cqrs_save_with_bad_data_returns_none_and_logs(
    values: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="django-cqrs"), transaction.atomic():
        assert Item.cqrs_save(values) is None
        assert Item.objects.count() == 0  # the caller's transaction is still usable
    assert any("CQRS save error" in r.message and reason in r.message for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_cqrs_save_database_error_returns_none_and_keeps_the_callers_transaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert Item.cqrs_save(data(1, 0, 0, name="a", code="SAME")).pk == 1
    with caplog.at_level(logging.ERROR, logger="django-cqrs"), transaction.atomic():
        assert Item.cqrs_save(data(2, 0, 0, name="b", code="SAME")) is None  # unique code
        assert Item.cqrs_save(data(3, 0, 0, name="c")).pk == 3
    assert sorted(Item.objects.values_list("pk", flat=True)) == [1, 3]
    assert any("CQRS save error: pk = 2 (item)" in r.message for r in caplog.records)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "values",
    [{"cqrs_revision": 1, "cqrs_updated": str(at(1))}, {"id": "one", "cqrs_revision": 1}],
    ids=["no-pk", "bad-pk"],
)
def test_cqrs_delete_with_bad_data_returns_false_and_logs(
    values: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    Item.cqrs_save(data(1, 0, 0, name="a"))
    with caplog.at_level(logging.ERROR, logger="django-cqrs"):
        assert Item.cqrs_delete(values) is False
    assert Item.objects.filter(pk=1).exists()
    assert any("CQRS delete error" in r.message for r in caplog.records)


@pytest.mark.django_db
def test_the_consumer_still_dead_letters_bad_data_with_the_reason() -> None:
    bad_save = {"id": 1, "cqrs_updated": str(at(0)), "name": "x"}
    bad_delete = {"cqrs_revision": 1, "cqrs_updated": str(at(1))}
    assert Item.cqrs_save(bad_save) is None and Item.cqrs_delete(bad_delete) is False
    outcomes = make_handler()(
        [payload("item", bad_save), payload("item", bad_delete, SignalType.DELETE)]
    )
    assert kinds(outcomes) == ["dead", "dead"]
    assert "BadData: master data lacks cqrs_revision" in outcomes[0].reason
    assert "BadData: DELETE data lacks the primary key" in outcomes[1].reason


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stored_revision", [5, 0], ids=["newer-row", "same-row"])
def test_create_instance_returns_none_when_the_row_exists(
    stored_revision: int, caplog: pytest.LogCaptureFixture
) -> None:
    Item.cqrs_save(data(1, stored_revision, 10, name="stored"))
    with caplog.at_level(logging.ERROR, logger="django-cqrs"), transaction.atomic():
        created = Item.cqrs.create_instance(
            {"id": 1, "name": "older", "cqrs_revision": 0, "cqrs_updated": at(0)}
        )
        assert created is None
        assert Item.objects.get(pk=1).name == "stored"  # and the transaction is usable
    assert any("CQRS create error: pk = 1 (item)" in r.message for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_update_instance_database_error_returns_none() -> None:
    Item.cqrs_save(data(1, 0, 0, name="a", code="ONE"))
    Item.cqrs_save(data(2, 0, 0, name="b", code="TWO"))
    with transaction.atomic():
        updated = Item.cqrs.update_instance(
            Item.objects.get(pk=2),
            {"id": 2, "name": "b", "code": "ONE", "cqrs_revision": 1, "cqrs_updated": at(1)},
        )
        assert updated is None
    assert Item.objects.get(pk=2).code == "TWO"


# -- registries --------------------------------------------------------------------------------


def test_registry_models_are_dicts_by_cqrs_id() -> None:
    for registry, cqrs_id, model in (
        (MasterRegistry, "author", Author),
        (ReplicaRegistry, "item", Item),
    ):
        models = registry.models
        assert isinstance(models, dict)
        assert models[cqrs_id] is model and models.get(cqrs_id) is model
        assert cqrs_id in models and "nobody" not in models and models.get("nobody") is None
        assert (cqrs_id, model) in models.items() and len(models) == len(list(models))
        assert registry.get_model_by_cqrs_id(cqrs_id) is model


def test_registry_models_dict_is_live() -> None:
    class Late:
        CQRS_ID = "legacy_contract_late"

    ReplicaRegistry.register_model(Late)
    try:
        assert ReplicaRegistry.models["legacy_contract_late"] is Late
    finally:
        ReplicaRegistry.models.pop("legacy_contract_late")
    assert ReplicaRegistry.get_model_by_cqrs_id("legacy_contract_late") is None


@pytest.mark.parametrize("registry", [MasterRegistry, ReplicaRegistry])
def test_duplicate_cqrs_id_is_an_assertion_and_a_configuration_error(registry: Any) -> None:
    cqrs_id = "author" if registry is MasterRegistry else "item"
    other = type("Impostor", (), {"CQRS_ID": cqrs_id})
    with pytest.raises(AssertionError, match="give each model its own CQRS_ID"):
        registry.register_model(other)
    try:
        registry.register_model(other)
    except ConfigurationError as exc:
        assert isinstance(exc, DuplicateCQRSId)
    else:
        pytest.fail("a duplicate CQRS_ID was accepted")
    assert registry.models[cqrs_id] is not other


def test_duplicate_cqrs_id_raises_under_python_optimize() -> None:
    code = (
        "from cqrs_core.registries import Registry\n"
        "r = Registry('replica')\n"
        "r.register_model(type('A', (), {'CQRS_ID': 'x'}))\n"
        "try:\n"
        "    r.register_model(type('B', (), {'CQRS_ID': 'x'}))\n"
        "except AssertionError:\n"
        "    print('raised')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONOPTIMIZE"}
    done = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "raised"
