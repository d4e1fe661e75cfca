"""The consumer's database connection between batches (`dj_cqrs.consumer._refresh_connections`).

With Django's default `CONN_MAX_AGE = 0` a batch must not reconnect (that cost more than the
batch), yet a connection is still replaced after a bounded time and when it has gone bad.
"""

from __future__ import annotations

from typing import Any

import pytest
from cqrs_replica_models import Item
from django.db import connection, connections
from replica_support import data, payload

from dj_cqrs import consumer
from dj_cqrs.consumer import make_handler

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def max_age(request: pytest.FixtureRequest) -> Any:
    """Run the test with `CONN_MAX_AGE` set to the parameter, restored afterwards."""
    settings_dict = connection.settings_dict
    saved = settings_dict.get("CONN_MAX_AGE", 0)
    connection.close()
    settings_dict["CONN_MAX_AGE"] = request.param
    yield request.param
    connection.close()
    settings_dict["CONN_MAX_AGE"] = saved


def _apply(handler: Any, pk: int) -> None:
    [outcome] = handler([payload("item", data(pk, 0, 0, name=f"n{pk}"))])
    assert outcome.kind.value == "applied"


def _backend() -> object:
    """The DB-API connection itself: holding it keeps its identity from being reused."""
    assert connection.connection is not None
    return connection.connection


@pytest.mark.parametrize("max_age", [0, None, 600], indirect=True)
def test_batches_share_one_connection(max_age):
    handler = make_handler()
    _apply(handler, 1)
    first = _backend()
    for pk in range(2, 6):
        _apply(handler, pk)
        assert _backend() is first
    assert Item.objects.count() == 5


@pytest.mark.parametrize("max_age", [0], indirect=True)
def test_default_max_age_reconnects_after_the_consumer_lifetime(max_age, monkeypatch):
    handler = make_handler()
    _apply(handler, 1)
    first = _backend()
    # Opened "lifetime" seconds ago: the next batch starts on a new connection.
    monkeypatch.setattr(consumer, "CONSUMER_CONN_LIFETIME", 0.0)
    _apply(handler, 2)
    assert _backend() is not first
    assert Item.objects.count() == 2


@pytest.mark.parametrize("max_age", [1], indirect=True)
def test_positive_max_age_is_used_as_it_is(max_age):
    handler = make_handler()
    _apply(handler, 1)
    first = _backend()
    connection.close_at -= 2  # as if it had been opened 2 s ago
    _apply(handler, 2)
    assert _backend() is not first


@pytest.mark.parametrize("max_age", [0], indirect=True)
def test_connection_killed_while_idle_is_replaced_before_the_batch(max_age, monkeypatch, caplog):
    """The server ended the session while the consumer waited (restart, idle timeout)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs a server that can end another session (PostgreSQL)")
    handler = make_handler()
    _apply(handler, 1)
    pid = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    monkeypatch.setattr(consumer, "CONSUMER_CONN_CHECK_IDLE", 0.0)  # the wait was "long"
    _apply(handler, 2)
    assert connection.connection.info.backend_pid != pid
    # Replaced before the batch: the batch did not fail and fall back to one by one.
    assert "could not commit" not in caplog.text
    assert Item.objects.count() == 2


@pytest.mark.parametrize("max_age", [0], indirect=True)
def test_short_pauses_skip_the_health_check(max_age, monkeypatch):
    handler = make_handler()
    _apply(handler, 1)
    checks: list[None] = []
    wrapper = type(connections["default"])
    real = wrapper.is_usable

    def counting(self: Any) -> bool:
        checks.append(None)
        return real(self)

    monkeypatch.setattr(wrapper, "is_usable", counting)
    _apply(handler, 2)
    assert checks == []
    monkeypatch.setattr(consumer, "CONSUMER_CONN_CHECK_IDLE", 0.0)
    _apply(handler, 3)
    assert len(checks) == 1
