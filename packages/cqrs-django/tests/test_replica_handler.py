"""The consumer handler: one Outcome per payload, failures isolated per message."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from cqrs_replica_models import AuthorRef, DirectSyncOnly, Flaky, Item, RawEvents
from django.db import connection
from replica_support import at, data, payload

from cqrs_core.constants import SignalType
from cqrs_core.exceptions import ConfigurationError
from dj_cqrs.consumer import make_handler, resolve_cqrs_ids
from dj_cqrs.mixins import RawReplicaMixin
from dj_cqrs.registries import ReplicaRegistry, _replicas


def kinds(outcomes: Any) -> list[str]:
    return [outcome.kind.value for outcome in outcomes]


@pytest.fixture(autouse=True)
def _clear_raw_calls() -> None:
    RawEvents.calls.clear()


@pytest.mark.django_db
def test_applied_and_unknown_cqrs_id_is_dead() -> None:
    outcomes = make_handler()(
        [payload("item", data(1, 0, 0, name="a")), payload("nobody", data(1, 0, 0))]
    )
    assert kinds(outcomes) == ["applied", "dead"]
    assert "no replica model has CQRS_ID 'nobody' in this service" in outcomes[1].reason
    assert Item.objects.get(pk=1).name == "a"


@pytest.mark.django_db
def test_ids_outside_the_handler_filter_are_released() -> None:
    outcomes = make_handler(["author"])([payload("item", data(1, 0, 0, name="a"))])
    assert kinds(outcomes) == ["release"]
    assert not Item.objects.exists()


@pytest.mark.django_db
def test_one_failing_message_does_not_fail_the_batch() -> None:
    outcomes = make_handler()(
        [
            payload("item", data(1, 0, 0, name="a")),
            payload("flaky", data(1, 0, 0, mode="raise")),
            payload("item", data(2, 0, 0, name="b")),
        ]
    )
    assert kinds(outcomes) == ["applied", "retry", "applied"]
    assert outcomes[1].delay == 0.25
    assert "RuntimeError: flaky replica refuses this row" in outcomes[1].reason
    assert sorted(Item.objects.values_list("pk", flat=True)) == [1, 2]
    assert not Flaky.objects.exists()  # its partial write was rolled back


@pytest.mark.django_db
def test_falsy_result_is_a_failure_and_rolls_back() -> None:
    outcomes = make_handler()([payload("flaky", data(1, 0, 0, mode="falsy"), retries=1)])
    assert kinds(outcomes) == ["retry"]
    assert outcomes[0].delay == 0.5
    assert "falsy" in outcomes[0].reason
    assert not Flaky.objects.exists()


@pytest.mark.django_db
def test_database_error_rolls_back_that_message_only() -> None:
    outcomes = make_handler()(
        [
            payload("flaky", data(1, 0, 0, mode="db")),
            payload("item", data(1, 0, 0, name="after the error")),
        ]
    )
    assert kinds(outcomes) == ["retry", "applied"]
    assert "no_such_table_for_cqrs_tests" in outcomes[0].reason
    assert Item.objects.get(pk=1).name == "after the error"
    assert not Flaky.objects.exists()


@pytest.mark.django_db
def test_integrity_error_is_isolated() -> None:
    outcomes = make_handler()(
        [
            payload("item", data(1, 0, 0, name="a", code="same")),
            payload("item", data(2, 0, 0, name="b", code="same")),
            payload("item", data(3, 0, 0, name="c", code="other")),
        ]
    )
    assert kinds(outcomes) == ["applied", "retry", "applied"]
    assert "IntegrityError" in outcomes[1].reason
    assert sorted(Item.objects.values_list("pk", flat=True)) == [1, 3]


@pytest.mark.django_db
def test_retries_exhausted_is_dead() -> None:
    outcomes = make_handler()([payload("flaky", data(1, 0, 0, mode="raise"), retries=2)])
    assert kinds(outcomes) == ["dead"]
    assert "not retried after 2 retries" in outcomes[0].reason


@pytest.mark.django_db
def test_bad_data_is_dead_at_once() -> None:
    outcomes = make_handler()([payload("item", {"id": 1, "cqrs_revision": 0})])
    assert kinds(outcomes) == ["dead"]
    assert "cqrs_updated" in outcomes[0].reason


@pytest.mark.django_db
def test_outcomes_keep_the_input_order_while_rows_are_applied_by_key() -> None:
    batch = [
        payload("item", data(2, 0, 0, name="b0")),
        payload("author", data(1, 0, 0, name="A")),
        payload("item", data(1, 0, 0, name="a0")),
        payload("item", data(2, 1, 1, name="b1")),
        payload("nobody", data(1, 0, 0)),
    ]
    assert kinds(make_handler()(batch)) == ["applied"] * 4 + ["dead"]
    assert Item.objects.get(pk=2).name == "b1"


@pytest.mark.django_db
def test_only_direct_syncs_on_the_model() -> None:
    handler = make_handler()
    broadcast = payload("direct_only", data(1, 0, 0, name="x"), SignalType.SYNC)
    directed = payload("direct_only", data(1, 0, 0, name="y"), SignalType.SYNC, queue="replica")
    save = payload("direct_only", data(2, 0, 0, name="z"))
    assert kinds(handler([broadcast, directed, save])) == ["skipped", "applied", "applied"]
    assert DirectSyncOnly.objects.get(pk=1).name == "y"


@pytest.mark.django_db
def test_only_direct_syncs_in_settings(settings: Any) -> None:
    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_ONLY_DIRECT_SYNCS": True}}
    broadcast = payload("item", data(1, 0, 0, name="x"), SignalType.SYNC)
    assert kinds(make_handler()([broadcast])) == ["skipped"]
    assert not Item.objects.exists()


@pytest.mark.django_db
def test_meta_is_passed_only_to_models_that_ask() -> None:
    handler = make_handler()
    outcomes = handler(
        [
            payload("raw_event", data(1, 0, 0), meta={"k": "v"}),
            payload("raw_event", {"id": 1, "cqrs_revision": 1}, SignalType.DELETE, meta=[1]),
            payload("author", data(5, 0, 0, name="M"), meta={"from": "master"}),
            payload("item", data(5, 0, 0, name="no meta"), meta={"ignored": True}),
        ]
    )
    assert kinds(outcomes) == ["applied"] * 4
    assert [(kind, meta) for kind, _, meta in RawEvents.calls] == [
        ("save", {"k": "v"}),
        ("delete", [1]),
    ]
    assert AuthorRef.objects.get(pk=5).last_meta == {"from": "master"}


@pytest.mark.django_db
def test_raw_replica_falsy_result_is_retried(settings: Any) -> None:
    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_MAX_RETRIES": 3, "CQRS_RETRY_DELAY": 4}}
    outcomes = make_handler()([payload("raw_event", data(1, 0, 0, fail=True))])
    assert kinds(outcomes) == ["retry"] and outcomes[0].delay == 4


@pytest.mark.django_db
def test_sync_and_delete_through_the_handler() -> None:
    handler = make_handler()
    handler([payload("item", data(1, 0, 0, name="a")), payload("item", data(1, 3, 3, name="b"))])
    handler([payload("item", data(1, 1, 1, name="synced"), SignalType.SYNC)])
    assert Item.objects.get(pk=1).name == "synced"
    outcomes = handler(
        [
            payload(
                "item", {"id": 1, "cqrs_revision": 2, "cqrs_updated": str(at(9))}, SignalType.DELETE
            ),
            payload("item", data(1, 1, 1, name="stale"), SignalType.SYNC),
        ]
    )
    assert kinds(outcomes) == ["applied", "applied"]
    assert not Item.objects.exists()


class ConnectionKiller(RawReplicaMixin):
    """Closes the database connection in the middle of a batch (a lost connection)."""

    CQRS_ID = "test_connection_killer"
    calls: ClassVar[int] = 0

    @classmethod
    def cqrs_save(cls, master_data, previous_data=None, sync=False, meta=None):  # type: ignore[no-untyped-def]
        cls.calls += 1
        connection.close()
        return True


@pytest.mark.django_db(transaction=True)
def test_lost_connection_in_a_batch_falls_back_to_one_transaction_per_message() -> None:
    try:
        outcomes = make_handler()(
            [
                payload("item", data(1, 0, 0, name="a")),
                payload("test_connection_killer", data(1, 0, 0)),
                payload("item", data(2, 0, 0, name="b")),
            ]
        )
    finally:
        _replicas.unregister("test_connection_killer")
    assert ConnectionKiller.calls == 2  # once in the batch, once on its own
    assert kinds(outcomes) == ["applied", "retry", "applied"]
    assert sorted(Item.objects.values_list("pk", flat=True)) == [1, 2]


def test_resolve_cqrs_ids() -> None:
    assert resolve_cqrs_ids() == sorted(ReplicaRegistry.models)
    assert resolve_cqrs_ids(["item", "author", "item"]) == ["item", "author"]
    with pytest.raises(ConfigurationError, match="did you mean 'item'") as info:
        resolve_cqrs_ids(["itme"])
    assert "Registered: author" in str(info.value)


class Sleeper(RawReplicaMixin):
    """Runs a slow query (for CQRS_QUERY_TIMEOUT)."""

    CQRS_ID = "test_sleeper"

    @classmethod
    def cqrs_save(cls, master_data, previous_data=None, sync=False, meta=None):  # type: ignore[no-untyped-def]
        sleep = "SLEEP(2)" if connection.vendor == "mysql" else "pg_sleep(2)"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {sleep}")
        return True


@pytest.mark.django_db(transaction=True)
def test_query_timeout_fails_that_message_only(settings: Any) -> None:
    if connection.vendor not in ("postgresql", "mysql"):
        _replicas.unregister("test_sleeper")
        pytest.skip("CQRS_QUERY_TIMEOUT is applied on PostgreSQL and MySQL/MariaDB")
    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_QUERY_TIMEOUT": 100}}
    try:
        outcomes = make_handler()(
            [payload("test_sleeper", data(1, 0, 0)), payload("item", data(1, 0, 0, name="a"))]
        )
    finally:
        _replicas.unregister("test_sleeper")
    assert kinds(outcomes) == ["retry", "applied"]
    if connection.vendor == "postgresql":
        assert "statement timeout" in outcomes[0].reason
    else:
        assert ("max_statement_time" if connection.mysql_is_mariadb else "execution time") in (
            outcomes[0].reason
        )
    assert Item.objects.filter(pk=1).exists()
    if connection.vendor == "mysql":  # a session setting there: put back after the batch
        variable = "max_statement_time" if connection.mysql_is_mariadb else "max_execution_time"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT @@session.{variable} = @@global.{variable}")
            assert cursor.fetchone()[0] == 1
