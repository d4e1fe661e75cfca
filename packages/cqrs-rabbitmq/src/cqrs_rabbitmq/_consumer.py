"""The replica's consume loop: batches, settling by outcome, and reconnecting by itself."""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from cqrs_core import wire
from cqrs_core.exceptions import ConfigurationError, PublishError
from cqrs_core.messages import Handler, Inbound, OutcomeKind, Settled
from cqrs_rabbitmq._confirms import ConfirmingChannel, ConfirmTimeout, Message
from cqrs_rabbitmq._connection import (
    CONNECTION_ERRORS,
    connect,
    fatal_channel_error,
    settings_error,
)

if TYPE_CHECKING:
    from cqrs_rabbitmq.transport import RabbitMQTransport

logger = logging.getLogger("django-cqrs")

_IDLE_WAIT = 0.2
"""Longest a single wait for deliveries lasts, so `stop()` is noticed quickly."""
_TICK_EVERY = 0.5
_FAILED_SETTLE_PAUSE = 0.5
"""Pause after messages were given back, so a message nobody can take does not spin."""
_RECONNECT_ON: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, ConfirmTimeout)
"""Failures after which the loop reconnects and re-declares."""
ROUTING_KEY_HEADER = wire.ROUTING_KEY_HEADER
"""Original routing key of a released message republished to the tail of its queue.

A requeued (nacked) message goes back to the head of the queue, so `prefetch_count` released
messages there would be all a consumer ever receives. A released message is instead republished
through the default exchange straight to the end of the same queue; its routing key then is the
queue name, so the key it was first published with travels in this header.
"""


def delivery_routing_key(routing_key: str, properties: pika.BasicProperties | None) -> str:
    """The key a delivery was first published with: the release header's when it has one."""
    original = ((properties and properties.headers) or {}).get(ROUTING_KEY_HEADER)
    if isinstance(original, bytes):
        original = original.decode("utf-8", "replace")
    return original if isinstance(original, str) else routing_key


_Delivery = tuple[int, str, bytes, pika.BasicProperties]
"""(delivery tag, original routing key, body, properties) of one buffered delivery."""


class ConsumerCancelled(ConnectionError):
    """RabbitMQ cancelled our consumer (the queue was deleted); reconnect and re-declare."""


class ConsumerLoop:
    """Runs `RabbitMQTransport.consume` until the transport is stopped."""

    def __init__(
        self,
        transport: RabbitMQTransport,
        handler: Handler,
        cqrs_ids: Collection[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        self.transport = transport
        self.settings = transport.settings
        self.topology = transport.topology
        self.handler = handler
        self.cqrs_ids = frozenset(cqrs_ids)
        self.on_ready = on_ready
        self.on_tick = on_tick
        common = transport.common
        self.batch_size = common.batch_size
        self.batch_timeout = common.batch_timeout
        self.prefetch = common.prefetch_count
        self._buffer: list[_Delivery] = []
        self._first_at = 0.0
        self._last_tick = time.monotonic()
        self.reconnects = 0
        """How many times the connection was lost and re-opened (for tests and metrics)."""

    def run(self) -> None:
        delay = self.settings.reconnect_delay
        ready = False
        while not self.transport.stopping:
            connection: BlockingConnection | None = None
            serving = False
            try:
                connection = connect(self.settings)
                channel = connection.channel()
                self.topology.declare(channel, self.cqrs_ids)
                channel.basic_qos(prefetch_count=self.prefetch)
                confirms = ConfirmingChannel(connection, channel)
                channel.basic_consume(self.topology.queue, self._on_message, auto_ack=False)
                if not ready:
                    ready = True
                    if self.on_ready is not None:
                        self.on_ready()
                elif self.reconnects:
                    logger.info("Reconnected to RabbitMQ at %s", self.settings.display_url)
                delay = self.settings.reconnect_delay
                serving = True
                self._serve(connection, channel, confirms)
            except ConfigurationError:
                raise
            except _RECONNECT_ON as exc:
                if fatal_channel_error(exc):
                    raise settings_error(exc, self.settings, "set up the replica queues") from None
                self.reconnects += 1
                if serving:
                    logger.warning(
                        "Lost RabbitMQ at %s (%s: %s); unacknowledged messages will be "
                        "redelivered. Reconnecting in %.1f s",
                        self.settings.display_url,
                        type(exc).__name__,
                        self.settings.redact(exc),
                        delay,
                    )
                else:  # never got as far as consuming: nothing was taken, nothing is lost
                    logger.warning(
                        "Cannot connect to RabbitMQ at %s: %s. Retrying in %.1f s",
                        self.settings.display_url,
                        _cause(exc, self.settings.redact),
                        delay,
                    )
                self._pause(delay)
                delay = min(delay * 2, self.settings.reconnect_max_delay)
            finally:
                self._buffer.clear()
                if connection is not None:
                    with contextlib.suppress(Exception):
                        if connection.is_open:
                            connection.close()

    def _on_message(
        self, _channel: BlockingChannel, method: Any, properties: Any, body: bytes
    ) -> None:
        if not self._buffer:
            self._first_at = time.monotonic()
        key = delivery_routing_key(method.routing_key, properties)
        self._buffer.append((method.delivery_tag, key, body, properties))

    def _serve(
        self, connection: BlockingConnection, channel: BlockingChannel, confirms: ConfirmingChannel
    ) -> None:
        full = min(self.batch_size, self.prefetch)
        while not self.transport.stopping:
            if self._buffer:
                wait = max(0.0, self._first_at + self.batch_timeout - time.monotonic())
            else:
                wait = _IDLE_WAIT
            if len(self._buffer) < full and wait > 0:
                connection.process_data_events(time_limit=wait)
            now = time.monotonic()
            if self._buffer and (
                len(self._buffer) >= full or now >= self._first_at + self.batch_timeout
            ):
                batch = self._buffer[: self.batch_size]
                del self._buffer[: self.batch_size]
                self._first_at = now - self.batch_timeout  # what is left over is due now
                self._handle(batch, connection, channel, confirms)
                self._tick()
            elif now - self._last_tick >= _TICK_EVERY:
                if not channel.consumer_tags:
                    raise ConsumerCancelled("the broker cancelled the consumer")
                self._tick()

    def _handle(
        self,
        batch: list[_Delivery],
        connection: BlockingConnection,
        channel: BlockingChannel,
        confirms: ConfirmingChannel,
    ) -> None:
        deliveries = {tag: (key, body, properties) for tag, key, body, properties in batch}
        inbound = [
            Inbound(
                body,
                queue=self.topology.inbound_queue(key),
                token=tag,
                headers=wire.carried_headers(properties.headers if properties else None),
            )
            for tag, (key, body, properties) in deliveries.items()
        ]
        settled = self.transport.dispatch(self.handler, inbound, cqrs_ids=self.cqrs_ids)
        acks: list[int] = []
        give_back: list[int] = []
        moved: list[int] = []
        released: list[int] = []
        messages: list[Message] = []
        for item in settled:
            tag = item.message.token
            kind = item.outcome.kind
            if item.outcome.acks:
                acks.append(tag)
            elif kind is OutcomeKind.RELEASE:
                messages.append(self._to_tail(*deliveries[tag]))
                released.append(tag)
            else:
                messages.append(self._republish(item))
                moved.append(tag)
        if messages:
            # Stored copies first (confirmed), originals acked after: never lose a message.
            try:
                confirms.publish(messages, timeout=self.settings.publish_timeout)
            except ConfirmTimeout:
                raise
            except PublishError as exc:
                logger.error(
                    "Could not store %d retry/dead-letter/released message(s) (%s); the "
                    "originals are given back to the queue and will be handled again",
                    len(messages),
                    exc,
                )
                give_back.extend(moved)
                give_back.extend(released)
                released.clear()
            else:
                acks.extend(moved)
        handled = bool(acks)
        acks.extend(released)
        for tag in give_back:
            channel.basic_nack(delivery_tag=tag, requeue=True)
        if acks:
            if len(acks) + len(give_back) == len(batch):
                # Every older delivery is settled: one multiple-ack covers them all.
                channel.basic_ack(delivery_tag=max(acks), multiple=True)
            else:
                for tag in acks:
                    channel.basic_ack(delivery_tag=tag)
        if (give_back or released) and not handled:
            # Nothing in the batch was ours: do not spin on messages nobody here can take.
            self._pause(_FAILED_SETTLE_PAUSE, connection)

    def _to_tail(self, key: str, body: bytes, properties: pika.BasicProperties) -> Message:
        """A released message, unchanged, to the end of our queue with its key in a header."""
        properties = copy.copy(properties)
        properties.headers = {**(properties.headers or {}), ROUTING_KEY_HEADER: key}
        # RabbitMQ checks `user_id` against the publishing connection's user and would close
        # the channel over a message first published by another user: it is not kept.
        properties.user_id = None
        return Message("", self.topology.queue, body, properties)

    def _republish(self, item: Settled) -> Message:
        transport = self.transport
        if item.outcome.kind is OutcomeKind.RETRY:
            retry = transport.retry_message(item)
            delay_ms = max(0, round((retry.delay or 0) * 1000))
            return Message(
                self.topology.delay_exchange,
                transport.routing_key(retry),
                retry.body,
                transport.properties(retry.headers, expiration=str(delay_ms)),
            )
        return transport.dead_letter_amqp(transport.dead_letter_message(item), self.cqrs_ids)

    def _tick(self) -> None:
        self._last_tick = time.monotonic()
        if self.on_tick is not None:
            self.on_tick()

    def _pause(self, seconds: float, connection: BlockingConnection | None = None) -> None:
        """Wait `seconds`, ticking, servicing `connection` and returning early on stop."""
        deadline = time.monotonic() + seconds
        while not self.transport.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if connection is not None:
                connection.process_data_events(time_limit=min(left, _IDLE_WAIT))
            else:
                time.sleep(min(left, _IDLE_WAIT))
            if time.monotonic() - self._last_tick >= _TICK_EVERY:
                self._tick()


def _cause(exc: BaseException, redact: Callable[[object], str]) -> str:
    """The innermost reason of a connection failure, e.g. `connection refused`.

    pika wraps the socket error twice (`AMQPConnectionError` holding an
    `AMQPConnectorSocketConnectError` whose `.exception` is the `ConnectionRefusedError`); the
    operator needs the bottom of it.
    """
    for _ in range(5):
        nested = [*exc.args, getattr(exc, "exception", None), exc.__cause__]
        inner = next((item for item in nested if isinstance(item, BaseException)), None)
        if inner is None:
            break
        exc = inner
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return f"{type(exc).__name__}: {redact(exc)}"
