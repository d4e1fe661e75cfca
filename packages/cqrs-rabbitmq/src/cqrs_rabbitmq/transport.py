"""`RabbitMQTransport`: the django-cqrs wire over pika, with confirms and durable retries."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import pika

from cqrs_core import codec, routing, wire
from cqrs_core.exceptions import MalformedMessage, PublishError, TransportError
from cqrs_core.messages import DeadLetter, Handler, Outgoing
from cqrs_core.transports.base import BaseTransport, Capability
from cqrs_rabbitmq._confirms import ConfirmTimeout, Message
from cqrs_rabbitmq._connection import Session, Sessions
from cqrs_rabbitmq._consumer import ConsumerLoop
from cqrs_rabbitmq._settings import OPTION_KEYS, RabbitMQSettings, check_options
from cqrs_rabbitmq._topology import Topology

T = TypeVar("T")

REASON_HEADER = wire.DEAD_REASON_HEADER


class RabbitMQTransport(BaseTransport):
    """RabbitMQ through pika, wire-compatible with django-cqrs 3.x.

    Producing uses one connection per process and thread with publisher confirms and
    `mandatory`, so `produce` returns only once RabbitMQ stored the message, and an unroutable
    or refused message raises `PublishError`. Consuming acks only after the handler returned;
    retries wait in a durable delay queue; dead letters go to `dead_letter_<queue>`.
    """

    name = "rabbitmq"
    api_version = 1
    capabilities = frozenset(
        {
            Capability.DELAYED_RETRY,
            Capability.DEAD_LETTER,
            Capability.REDELIVERY,
            Capability.DEAD_LETTER_TTL,
            Capability.HEADERS,
        }
    )
    option_keys = OPTION_KEYS
    check_options = staticmethod(check_options)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.settings = RabbitMQSettings.from_options(self.options, self.common)
        self._sessions = Sessions(self.settings, self.common.exchange)
        self.last_consumer: ConsumerLoop | None = None
        """The loop of the latest `consume` call (its `reconnects` count is useful in tests)."""

    @property
    def topology(self) -> Topology:
        queue = self.common.require_queue()
        return Topology(
            exchange=self.common.exchange,
            queue=queue,
            dead_letter_queue=self.common.require_dead_letter_queue(),
            delay_exchange=self.settings.delay_exchange,
            delay_queue=self.settings.delay_queue or f"{queue}.delay",
        )

    # -- wire --------------------------------------------------------------------------------

    @staticmethod
    def routing_key(message: Outgoing) -> str:
        return routing.message_key(message.cqrs_id, message.queue)

    @staticmethod
    def properties(
        headers: Mapping[str, Any] | None = None, *, expiration: str | None = None
    ) -> pika.BasicProperties:
        """What upstream sets (text/plain, persistent), plus optional headers and TTL."""
        return pika.BasicProperties(
            content_type="text/plain",
            delivery_mode=2,
            headers=dict(headers) if headers else None,
            expiration=expiration,
        )

    def dead_letter_amqp(self, dead: Outgoing, bound: Collection[str] | None = None) -> Message:
        """A dead letter on the wire: `cqrs.<dlq>.<cqrs_id>` with the dead-message TTL.

        Only CQRS_IDs in `bound` (those this consumer declared; None: all) have that binding.
        Any other (a malformed body, an id no replica model of the service has) goes straight
        into the dead-letter queue by name: routed by key, the broker would refuse it
        (NO_ROUTE) and the message would be handed back again and again.
        """
        ttl = self.common.dead_message_ttl
        properties = self.properties(
            dead.headers, expiration=None if ttl is None else str(round(ttl * 1000))
        )
        if dead.payload is None or (bound is not None and dead.payload.cqrs_id not in bound):
            return Message("", self.common.require_dead_letter_queue(), dead.body, properties)
        return Message(self.common.exchange, self.routing_key(dead), dead.body, properties)

    # -- producing ---------------------------------------------------------------------------

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        amqp = [
            Message(self.common.exchange, self.routing_key(m), m.body, self.properties(m.headers))
            for m in messages
        ]
        if amqp:
            self._confirmed(amqp)

    def _confirmed(self, messages: list[Message]) -> None:
        deadline = time.monotonic() + self.settings.publish_timeout

        def publish(session: Session) -> None:
            session.confirms.publish(messages, timeout=max(deadline - time.monotonic(), 0.5))

        self._run(publish, deadline=deadline, doing="publish", error=PublishError)

    def _run(
        self,
        operation: Callable[[Session], T],
        *,
        doing: str,
        deadline: float | None = None,
        error: type[TransportError] = TransportError,
    ) -> T:
        self._check_open()
        if deadline is None:
            deadline = time.monotonic() + self.settings.publish_timeout
        try:
            return self._sessions.run(operation, deadline=deadline, doing=doing, error=error)
        except ConfirmTimeout:
            self._sessions.discard()  # late confirms would confuse the next publish
            raise

    # -- consuming ---------------------------------------------------------------------------

    def declare(self, cqrs_ids: Collection[str]) -> None:
        topology = self.topology
        self._run(lambda s: topology.declare(s.channel, cqrs_ids), doing="declare the queues")

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        loop = ConsumerLoop(self, handler, cqrs_ids, on_ready, on_tick)
        self.last_consumer = loop
        loop.run()

    # -- dead letters ------------------------------------------------------------------------

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        dlq = self.common.require_dead_letter_queue()

        def read(session: Session) -> list[DeadLetter]:
            channel = session.connection.channel()
            letters: list[DeadLetter] = []
            try:
                channel.queue_declare(dlq, durable=True)
                while limit is None or len(letters) < limit:
                    method, properties, body = channel.basic_get(dlq, auto_ack=False)
                    if method is None or properties is None or body is None:
                        break  # pika gives all three or none
                    letters.append(_letter(properties, body))
                if letters:  # give every one back, in place: reading must not consume
                    channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
            return letters

        return self._run(read, doing="read dead letters")

    def retry_dead_letters(self, *, limit: int | None = None) -> int:
        dlq = self.common.require_dead_letter_queue()
        queue = self.common.require_queue()

        def revive(session: Session) -> int:
            channel = session.channel
            channel.queue_declare(dlq, durable=True)
            tags: list[int] = []
            messages: list[Message] = []
            while limit is None or len(tags) < limit:
                method, _properties, body = channel.basic_get(dlq, auto_ack=False)
                if method is None or method.delivery_tag is None or body is None:
                    break  # pika gives all three or none, with a delivery tag
                tags.append(method.delivery_tag)
                messages.append(self._revived(queue, body))
            if not tags:
                return 0
            try:
                session.confirms.publish(messages, timeout=self.settings.publish_timeout)
            except BaseException:
                with contextlib.suppress(Exception):
                    channel.basic_nack(delivery_tag=tags[-1], multiple=True, requeue=True)
                raise
            channel.basic_ack(delivery_tag=tags[-1], multiple=True)
            return len(tags)

        return self._run(revive, doing="retry dead letters", error=PublishError)

    def _revived(self, queue: str, body: bytes) -> Message:
        body, payload = codec.revive(body)
        if payload is None:
            # Still malformed: back into the queue by name, where it is dead-lettered again.
            return Message("", queue, body, self.properties())
        return Message(
            self.common.exchange,
            routing.directed_key(queue, payload.cqrs_id),
            body,
            self.properties(),
        )

    def purge_dead_letters(self) -> int:
        dlq = self.common.require_dead_letter_queue()

        def purge(session: Session) -> int:
            session.channel.queue_declare(dlq, durable=True)
            purged = session.channel.queue_purge(dlq).method.message_count
            return int(purged or 0)

        return self._run(purge, doing="purge dead letters")

    # -- lifecycle ---------------------------------------------------------------------------

    def _close(self) -> None:
        self._sessions.close()


def _letter(properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    reason = wire.read_reason(properties.headers)
    try:
        payload = codec.decode(body, default_ttl=None)
    except MalformedMessage:
        payload = None
    return DeadLetter(body=body, reason=reason, payload=payload)
