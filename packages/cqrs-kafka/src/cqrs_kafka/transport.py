"""`KafkaTransport`: CQRS over Apache Kafka with confluent-kafka (librdkafka).

Topic layout (prefix `CQRS['kafka']['topic_prefix']`, default `cqrs.`):

- `<prefix><CQRS_ID>`: every change of one model; key = primary key, so one row's changes stay
  in order on one partition. Every replica service reads it as its own consumer group
  (`CQRS['queue']`). A SYNC for one service carries header `x-cqrs-queue`; others skip it.
- `<prefix>retry.<queue>`: retries of one replica service, with a due time header.
- `<prefix>dead.<queue>`: its dead letters, with the reason in a header. The consumer group
  `<queue>.dead-letters` remembers up to which offset they were purged or retried.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

from cqrs_core import codec
from cqrs_core.exceptions import PublishError, TransportError
from cqrs_core.messages import DeadLetter, Handler, Outgoing, Settled
from cqrs_core.transports.base import BaseTransport, Capability
from cqrs_kafka import headers as hdr
from cqrs_kafka.admin import TopicManager
from cqrs_kafka.consuming import ConsumeLoop
from cqrs_kafka.dead_letters import DeadLetterStore
from cqrs_kafka.publisher import Publisher, Record
from cqrs_kafka.settings import OPTION_KEYS, KafkaSettings, check_options


class KafkaTransport(BaseTransport):
    """Kafka transport: per-row ordering, delayed retries and dead letters on topics."""

    name = "kafka"
    api_version = 1
    capabilities = frozenset(
        {
            Capability.DELAYED_RETRY,
            Capability.DEAD_LETTER,
            Capability.REDELIVERY,
            Capability.HEADERS,
        }
    )
    option_keys = OPTION_KEYS
    check_options = staticmethod(check_options)

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.settings = KafkaSettings.from_options(self.options, self.common)
        self.topics = TopicManager(self.settings)
        self._publisher: Publisher | None = None
        self._lock = threading.Lock()
        self._loop: ConsumeLoop | None = None

    @property
    def publisher(self) -> Publisher:
        with self._lock:
            if self._publisher is None:
                self._publisher = Publisher(
                    self.settings.client_config("producer"), timeout=self.settings.publish_timeout
                )
            return self._publisher

    # -- producing -------------------------------------------------------------------------

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        records = [self.record(message) for message in messages]
        try:
            self.topics.ensure({r.topic for r in records}, timeout=self.settings.publish_timeout)
        except TransportError as exc:
            raise PublishError(str(exc)) from exc
        self.publisher.send(records)

    def record(self, message: Outgoing) -> Record:
        """The Kafka record of a message for `<prefix><CQRS_ID>`."""
        payload = message.payload
        return Record(
            self.settings.topic(message.cqrs_id),
            message.body,
            key=_key(message),
            headers=hdr.build(
                message.headers,
                signal=payload.signal_type.value if payload else None,
                queue=message.queue,
                retries=payload.retries if payload else None,
            ),
        )

    def retry_record(self, message: Outgoing, *, delay: float) -> Record:
        """A retry for this replica service, due `delay` seconds from now."""
        payload = message.payload
        return Record(
            self.settings.retry_topic(self.common.require_queue()),
            message.body,
            key=_key(message),
            headers=hdr.build(
                message.headers,
                signal=payload.signal_type.value if payload else None,
                queue=self.common.require_queue(),
                retries=payload.retries if payload else None,
                due=hdr.due_at(delay),
            ),
        )

    def dead_record(self, message: Outgoing, settled: Settled) -> Record:
        """A dead letter, with the reason in a header."""
        return Record(
            self.settings.dead_topic(self.common.require_queue()),
            message.body,
            key=_key(message) or _received_key(settled),
            headers=hdr.build(message.headers, queue=self.common.require_queue()),
        )

    # -- consuming -------------------------------------------------------------------------

    def declare(self, cqrs_ids: Collection[str]) -> None:
        queue = self.common.require_queue()
        timeout = self.settings.publish_timeout
        self.topics.ensure([self.settings.topic(i) for i in cqrs_ids], timeout=timeout)
        self.topics.ensure([self.settings.retry_topic(queue)], timeout=timeout)
        # One partition keeps dead letters in one order (they are few).
        self.topics.ensure([self.settings.dead_topic(queue)], timeout=timeout, partitions=1)

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        self.declare(cqrs_ids)
        loop = ConsumeLoop(self, handler, cqrs_ids)
        self._loop = loop
        try:
            loop.run(on_ready, on_tick)
        finally:
            self._loop = None

    # -- dead letters ----------------------------------------------------------------------

    @property
    def _dead(self) -> DeadLetterStore:
        queue = self.common.require_queue()
        self.declare(())
        return DeadLetterStore(self.settings, queue, self.settings.dead_topic(queue))

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        return [letter for letter, _ in self._dead.read(limit)]

    def retry_dead_letters(self, *, limit: int | None = None) -> int:
        store = self._dead
        letters = store.read(limit)
        records = []
        for letter, _ in letters:
            body, payload = codec.revive(letter.body)
            out = Outgoing(body, payload.cqrs_id if payload else "unknown", payload=payload)
            records.append(self.retry_record(out, delay=0))
        self.publisher.send(records)
        store.commit([position for _, position in letters])
        return len(letters)

    def purge_dead_letters(self) -> int:
        store = self._dead
        letters = store.read(None)
        store.commit([position for _, position in letters])
        return len(letters)

    # -- lifecycle -------------------------------------------------------------------------

    def _close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()


def _key(message: Outgoing) -> str | None:
    payload = message.payload
    if payload is None or payload.instance_pk is None:
        return None
    return str(payload.instance_pk)


def _received_key(settled: Settled) -> str | None:
    token = settled.message.token
    key = token.key() if hasattr(token, "key") else None
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key
