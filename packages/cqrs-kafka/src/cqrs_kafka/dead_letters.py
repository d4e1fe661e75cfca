"""Reading, retrying and purging the dead-letter topic of one replica service.

Kafka cannot delete single records, so "purged" is an offset: the consumer group
`<queue>.dead-letters` commits how far the dead letters were purged or retried, and readers
start from there. Reads use `assign()` (no group join) and stop at the end of the topic, found
from the high watermark and confirmed by a short idle wait (some Kafka-protocol brokers, Tansu
among them, report a high watermark below the real end), so they never block forever.
"""

from __future__ import annotations

import heapq
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from cqrs_core import codec
from cqrs_core.exceptions import MalformedMessage, TransportError
from cqrs_core.messages import DeadLetter
from cqrs_kafka import headers as hdr
from cqrs_kafka import records as rec
from cqrs_kafka.settings import KafkaSettings, dead_letter_group

Position = tuple[str, int, int]
"""(topic, partition, offset) of a dead letter."""

IDLE = 0.5
"""Seconds without a new record, once past the high watermark, that mean "end of topic"."""


class DeadLetterStore:
    """The dead letters of `queue`, stored in `topic`."""

    def __init__(self, settings: KafkaSettings, queue: str, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.group = dead_letter_group(queue)
        self.timeout = settings.publish_timeout

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                **self.settings.client_config("consumer"),
                "group.id": self.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 100,
            }
        )

    def read(self, limit: int | None) -> list[tuple[DeadLetter, Position]]:
        """Dead letters not purged yet, oldest first, at most `limit`."""
        consumer = self._consumer()
        try:
            partitions = self._partitions(consumer)
            committed = consumer.committed(
                [TopicPartition(self.topic, p) for p in partitions], timeout=self.timeout
            )
            start = {
                tp.partition: tp.offset if tp.offset >= 0 else OFFSET_BEGINNING for tp in committed
            }
            high = {
                p: consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=self.timeout
                )[1]
                for p in partitions
            }
            consumer.assign([TopicPartition(self.topic, p, start[p]) for p in partitions])
            found: dict[int, list[tuple[float, int, DeadLetter]]] = {p: [] for p in partitions}
            position = {p: max(start[p], 0) for p in partitions}
            single = len(partitions) == 1
            last_seen = time.monotonic()
            while True:
                if single and limit is not None and len(found[partitions[0]]) >= limit:
                    break
                at_end = all(position[p] >= high[p] for p in partitions)
                if at_end and time.monotonic() - last_seen > IDLE:
                    break
                if not at_end and time.monotonic() - last_seen > self.timeout:
                    raise TransportError(
                        f"reading dead letters from {self.topic!r} stalled for {self.timeout} s"
                    )
                for msg in consumer.consume(500, 0.1):
                    if msg.error():
                        continue
                    last_seen = time.monotonic()
                    p, offset = rec.where(msg)[1], rec.offset(msg)
                    position[p] = offset + 1
                    reason = hdr.read(rec.headers(msg)).get(hdr.DEAD_REASON, "")
                    stamp = msg.timestamp()[1]
                    found[p].append((stamp, offset, decode_letter(msg.value() or b"", reason)))
        except KafkaException as exc:
            raise TransportError(f"cannot read dead letters from {self.topic!r}: {exc}") from exc
        finally:
            consumer.close()
        merged = heapq.merge(
            *[[(s, p, o, letter) for s, o, letter in items] for p, items in found.items()]
        )
        letters = [(letter, (self.topic, p, o)) for _, p, o, letter in merged]
        return letters if limit is None else letters[:limit]

    def commit(self, positions: list[Position]) -> None:
        """Mark every dead letter up to each position as handled (purged or retried)."""
        offsets: dict[int, int] = {}
        for _, partition, offset in positions:
            offsets[partition] = max(offsets.get(partition, -1), offset + 1)
        if not offsets:
            return
        consumer = self._consumer()
        try:
            consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            raise TransportError(
                f"cannot record dead-letter progress for {self.topic!r}: {exc}"
            ) from exc
        finally:
            consumer.close()

    def _partitions(self, consumer: Any) -> list[int]:
        meta = consumer.list_topics(self.topic, timeout=self.timeout).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return [0]
        return sorted(meta.partitions)


def decode_letter(body: bytes, reason: str) -> DeadLetter:
    """A stored dead letter, with its payload when the body is a valid one."""
    try:
        payload = codec.decode(body, default_ttl=None)
    except MalformedMessage:
        payload = None
    return DeadLetter(body, reason, payload)
