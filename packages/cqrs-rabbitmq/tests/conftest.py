"""Fixtures for tests against the real RabbitMQ (127.0.0.1:5672, guest/guest by default).

Each test session gets a fresh virtual host (`rabbitmqctl add_vhost`), deleted at the end. When
`rabbitmqctl` is not usable the tests run on the `/` vhost with unique names and delete what
they declared. Override the broker with CQRS_TEST_RABBITMQ_HOST / _PORT.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pika
import pytest

from cqrs_core.testing.plugin import service_unavailable
from cqrs_rabbitmq.testing import temporary_vhost

HOST = os.environ.get("CQRS_TEST_RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("CQRS_TEST_RABBITMQ_PORT", "5672"))


@pytest.fixture(scope="session")
def rabbit_vhost() -> Iterator[str]:
    """A virtual host for this test session ("/" if one cannot be created)."""
    try:
        socket.create_connection((HOST, PORT), timeout=3).close()
    except OSError as exc:
        service_unavailable(f"RabbitMQ at {HOST}:{PORT}", exc)
    with temporary_vhost("cqrs_test") as name:
        yield name or "/"


@pytest.fixture(scope="session")
def rabbit_address(rabbit_vhost: str) -> tuple[str, int]:
    """(host, port) of the broker, e.g. for a TcpProxy in front of it."""
    return HOST, PORT


@pytest.fixture(scope="session")
def rabbit_url(rabbit_vhost: str) -> str:
    return f"amqp://guest:guest@{HOST}:{PORT}/{quote(rabbit_vhost, safe='')}"


@pytest.fixture
def amqp(rabbit_url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A raw pika channel on the test vhost (the 'spy' side of wire tests)."""
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:
        yield connection.channel()
    finally:
        with contextlib.suppress(Exception):
            connection.close()


@pytest.fixture
def cleanup(rabbit_url: str, rabbit_vhost: str) -> Iterator[Callable[..., None]]:
    """`cleanup(queue=..., exchange=...)`: delete what a transport with these names declares.

    Only needed on the "/" fallback vhost; a test vhost is deleted as a whole at the end.
    """
    queues: list[str] = []
    exchanges: list[str] = []

    def register(*, queue: str | None = None, exchange: str | None = None) -> None:
        if queue:
            queues.extend((queue, f"dead_letter_{queue}", f"{queue}.delay"))
        if exchange:
            exchanges.extend((exchange, f"{exchange}.delay"))

    yield register
    if rabbit_vhost != "/":
        return
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:
        for name in queues:
            channel = connection.channel()
            with contextlib.suppress(Exception):
                channel.queue_delete(name)
                channel.close()
        for name in exchanges:
            channel = connection.channel()
            with contextlib.suppress(Exception):
                channel.exchange_delete(name)
                channel.close()
    finally:
        with contextlib.suppress(Exception):
            connection.close()
