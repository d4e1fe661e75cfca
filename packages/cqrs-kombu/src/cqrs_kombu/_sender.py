"""Publishing on one kombu channel, with the properties upstream services put on the wire."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kombu import Connection, Exchange, Producer
from kombu.common import maybe_declare

from cqrs_core import wire

_ROUTE_CACHE_SECONDS = 1.0
_BATCH_COMMANDS = 1000
"""Redis commands buffered before a pipelined batch is sent (kombu's own default)."""


class Unroutable(Exception):
    """No queue is bound for the routing key, so the broker would drop the message."""


class Sender:
    """A producer that notices unroutable messages on every backend.

    AMQP tells us through `mandatory` + basic.return (which arrives before the publisher
    confirm). kombu's virtual transports (Redis, filesystem, ...) would silently divert the
    message to `ae.undeliver`, so their binding table is checked first.
    """

    def __init__(self, connection: Connection, exchange: Exchange, *, amqp: bool) -> None:
        self.exchange = exchange
        self.amqp = amqp
        self._returned: list[str] = []
        self._routes: dict[str, float] = {}
        on_return = self._on_return if amqp else None  # virtual channels have no basic.return
        self.producer = Producer(connection.channel(), on_return=on_return)

    @property
    def connection(self) -> Connection:
        connection: Connection = self.producer.connection
        return connection

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Send the publishes made inside in pipelined round trips, where kombu can.

        kombu's Redis channel otherwise costs two round trips per message (read the exchange's
        bindings, push): a backlog published one by one ran at the raw client's ~2,000 msg/s.
        Inside, the bindings are read once and the pushes go out in one pipeline at the end
        (and every `_BATCH_COMMANDS`). An error inside discards what was not sent yet; the
        caller treats the whole batch as unsent (the outbox keeps it). AMQP, the filesystem
        backend and kombu < 5.7 (no `Producer.batch`) publish one by one, as before.
        """
        start_batch = getattr(self.producer, "batch", None)
        if self.amqp or start_batch is None:
            yield
            return
        with _tables_read_once(self.producer.channel), start_batch(max_size=_BATCH_COMMANDS):
            yield

    def publish(
        self,
        body: bytes,
        routing_key: str,
        *,
        headers: Mapping[str, Any] | None = None,
        expiration: float | None = None,
    ) -> None:
        """Publish through the exchange; raise `Unroutable` when no queue is bound for it."""
        if not self.amqp and not self._routable(routing_key):
            raise Unroutable(routing_key)
        self._returned.clear()
        self._send(body, self.exchange, routing_key, headers, expiration, mandatory=self.amqp)
        if self._returned:
            raise Unroutable(routing_key)

    def publish_or_direct(
        self,
        body: bytes,
        routing_key: str,
        queue: str,
        *,
        headers: Mapping[str, Any] | None = None,
        expiration: float | None = None,
    ) -> None:
        """Publish through the exchange, or straight into `queue` if nothing is bound."""
        try:
            self.publish(body, routing_key, headers=headers, expiration=expiration)
        except Unroutable:
            self.direct(
                body, queue, headers={**(headers or {}), wire.ROUTING_KEY_HEADER: routing_key}
            )

    def direct(
        self,
        body: bytes,
        queue: str,
        *,
        headers: Mapping[str, Any] | None = None,
        expiration: float | None = None,
    ) -> None:
        """Put a message into one queue via the default exchange (no fan-out)."""
        self._send(body, "", queue, headers, expiration, mandatory=False)

    def _send(
        self,
        body: bytes,
        exchange: Exchange | str,
        routing_key: str,
        headers: Mapping[str, Any] | None,
        expiration: float | None,
        *,
        mandatory: bool,
    ) -> None:
        self.producer.publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            content_type="text/plain",
            content_encoding="utf-8",
            delivery_mode=2,
            headers=dict(headers or {}),
            expiration=expiration,
            mandatory=mandatory,
            declare=[self.exchange] if exchange else None,
        )

    def _routable(self, routing_key: str) -> bool:
        now = time.monotonic()
        if self._routes.get(routing_key, 0.0) > now:
            return True
        channel = self.producer.channel
        maybe_declare(self.exchange, channel)
        name = self.exchange.name
        table = channel.get_table(name)
        if channel.typeof(name).lookup(table, name, routing_key, None):
            self._routes[routing_key] = now + _ROUTE_CACHE_SECONDS
            return True
        return False

    def _on_return(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        self._returned.append(routing_key)


@contextlib.contextmanager
def _tables_read_once(channel: Any) -> Iterator[None]:
    """Within the block, each exchange's binding table is read from the broker once.

    A queue bound while the block runs gets the messages published after it, like a binding
    made between two separate publishes.
    """
    read = channel.get_table
    tables: dict[str, Any] = {}

    def get_table(exchange: str) -> Any:
        if exchange not in tables:
            tables[exchange] = read(exchange)
        return tables[exchange]

    channel.get_table = get_table
    try:
        yield
    finally:
        del channel.get_table  # the class's method again
