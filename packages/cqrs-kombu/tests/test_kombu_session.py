"""Consumer session setup: a failed setup closes its connection; settings refusals are fatal.

The consumer loop builds a new `Session` every few seconds while setup keeps failing; a
session that failed after connecting used to keep its connection open, one more per attempt.
"""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Connection, Queue

from cqrs_core.exceptions import ConfigurationError
from cqrs_core.messages import Outcome
from cqrs_core.testing.suite import IDS
from cqrs_kombu import KombuTransport
from cqrs_kombu import _session as session_module
from cqrs_kombu._session import Session


class SetupFailed(Exception):
    pass


def _record_connections(transport: KombuTransport, monkeypatch: pytest.MonkeyPatch) -> list:
    connections: list[Connection] = []
    connect = transport.connect

    def recording(**policy: Any) -> Connection:
        connection = connect(**policy)
        connections.append(connection)
        return connection

    monkeypatch.setattr(transport, "connect", recording)
    return connections


def _fail_after_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queues are declared, then building the session's Sender raises."""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise SetupFailed("setup step failed after connecting")

    monkeypatch.setattr(session_module, "Sender", broken)


def _applied(payloads: Any) -> list[Outcome]:
    return [Outcome.applied()] * len(payloads)


@pytest.mark.parametrize("kind", ["amqp", "redis", "filesystem"])
def test_failed_session_setup_closes_its_connection(backend_options, monkeypatch, kind):
    transport = KombuTransport(backend_options(kind))
    connections = _record_connections(transport, monkeypatch)
    _fail_after_connecting(monkeypatch)
    with pytest.raises(SetupFailed):
        Session(transport, IDS)
    assert len(connections) == 1
    assert not connections[0].connected
    transport.close()


@pytest.mark.parametrize("kind", ["amqp", "redis"])
def test_consume_retrying_a_failing_setup_leaks_no_connection(backend_options, monkeypatch, kind):
    transport = KombuTransport(backend_options(kind))
    connections = _record_connections(transport, monkeypatch)
    _fail_after_connecting(monkeypatch)
    raw: list[Any] = []

    def on_tick() -> None:
        raw.append(connections[-1]._connection)  # None once kombu let go of it
        if len(connections) >= 3:
            transport.stop()

    transport.consume(_applied, cqrs_ids=IDS, on_tick=on_tick)
    assert len(connections) == 3
    assert [connection.connected for connection in connections] == [False] * 3
    assert raw == [None] * 3
    transport.close()


def test_queue_declared_with_other_flags_is_a_configuration_error(backend_options, monkeypatch):
    """AMQP 406 PRECONDITION_FAILED: reconnecting cannot cure it, so consume raises."""
    options = backend_options("amqp")
    with Connection(options["url"]) as admin:
        Queue(options["queue"], durable=False, auto_delete=False)(admin.channel()).declare()
    transport = KombuTransport(options)
    connections = _record_connections(transport, monkeypatch)
    ticks: list[None] = []

    def on_tick() -> None:  # the old code logged a warning and reconnected forever
        ticks.append(None)
        if len(ticks) >= 3:
            transport.stop()

    with pytest.raises(ConfigurationError, match="PreconditionFailed") as raised:
        transport.consume(_applied, cqrs_ids=IDS, on_tick=on_tick)
    message = str(raised.value)
    assert repr(options["queue"]) in message
    assert "CQRS['queue']" in message
    assert "guest:guest" not in message
    assert ticks == []
    assert len(connections) == 1
    assert not connections[0].connected
    transport.close()


@pytest.mark.parametrize(
    ("replica", "expected"),
    [({}, 1000), ({"delay_queue_max_size": None}, 1000), ({"delay_queue_max_size": 1}, 1)],
)
def test_delay_queue_max_size(replica, expected):
    transport = KombuTransport({"url": "amqp://guest:guest@127.0.0.1:5672//", "replica": replica})
    assert transport.delay_capacity == expected


@pytest.mark.parametrize("value", [0, -1, True, False, "100", 2.5, "x", [10]])
def test_invalid_delay_queue_max_size_is_a_configuration_error(value):
    options = {"url": "amqp://guest:guest@127.0.0.1:5672//"}
    with pytest.raises(
        ConfigurationError, match=r"CQRS\['replica'\]\['delay_queue_max_size'\] must be an integer"
    ):
        KombuTransport({**options, "replica": {"delay_queue_max_size": value}})
