"""The consume loop: batches, delayed retries without blocking, commits after the handler.

Offsets are committed synchronously, per partition, only for messages whose outcome has been
carried out (applied, or republished to the retry / dead-letter topic and acknowledged by the
broker). A crash before the commit means the batch is delivered again: at-least-once, with the
replica's revision rules deciding what is stale. The retry topic is read by the same consumer:
a retry that is not due yet pauses its partition and seeks back to it, so main topics go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from cqrs_core import wire
from cqrs_core.messages import Handler, Inbound, OutcomeKind, Settled
from cqrs_kafka import headers as hdr
from cqrs_kafka import records as rec
from cqrs_kafka.publisher import Record

if TYPE_CHECKING:
    from cqrs_kafka.transport import KafkaTransport

logger = logging.getLogger("django-cqrs")

IDLE_TICK = 0.5
"""Longest wait for a message before `on_tick` runs and `stop()` is noticed."""

Partition = rec.Partition


class ConsumeLoop:
    """One run of `KafkaTransport.consume`: a consumer in the replica's group until stopped."""

    def __init__(
        self, transport: KafkaTransport, handler: Handler, cqrs_ids: Collection[str]
    ) -> None:
        self.transport = transport
        self.handler = handler
        self.cqrs_ids = frozenset(cqrs_ids)
        self.queue = transport.common.require_queue()
        self.settings = transport.settings
        self.retry_topic = self.settings.retry_topic(self.queue)
        self.paused: dict[Partition, tuple[int, int]] = {}
        """Retry partitions waiting for a message: (topic, partition) -> (due ms, offset)."""
        self.revoked: set[Partition] = set()
        self.assigned_once = False
        config = {
            "group.id": self.queue,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **self.settings.client_config("consumer"),
        }
        self.consumer = Consumer(config)

    # -- rebalances ------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned_once = True
        for tp in partitions:
            self.paused.pop((tp.topic, tp.partition), None)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are settled and committed before the next poll, so nothing settled is
        # pending here; messages fetched but not handed over are simply not committed.
        for tp in partitions:
            self.revoked.add((tp.topic, tp.partition))
            self.paused.pop((tp.topic, tp.partition), None)

    # -- the loop --------------------------------------------------------------------------

    def run(self, on_ready: Callable[[], None] | None, on_tick: Callable[[], None] | None) -> None:
        topics = [self.settings.topic(i) for i in sorted(self.cqrs_ids)] + [self.retry_topic]
        self.consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        ready = False
        try:
            while not self.transport.stopping:
                batch = self._fetch()
                if not ready and (self.assigned_once or batch):
                    ready = True
                    if on_ready is not None:
                        on_ready()
                if batch:
                    self._handle(batch)
                if on_tick is not None:
                    on_tick()
        finally:
            self.consumer.close()  # leaves the group so partitions move at once

    def _fetch(self) -> list[Message]:
        self._resume_due()
        wait = IDLE_TICK
        if self.paused:
            soonest = min(due for due, _ in self.paused.values())
            wait = min(wait, max(soonest / 1000 - time.time(), 0.01))
        self.revoked.clear()
        first = self.consumer.poll(wait)
        if first is None:
            return []
        # Never more taken unsettled than consumer_prefetch_count (the shared contract).
        common = self.transport.common
        limit = min(common.batch_size, common.prefetch_count)
        more = self.consumer.consume(limit - 1, common.batch_timeout) if limit > 1 else []
        batch: list[Message] = []
        for msg in [first, *more]:
            if error := msg.error():
                self._on_error(error)
            elif (msg.topic(), msg.partition()) in self.revoked:
                continue  # the partition moved during this poll; its new owner reads it
            else:
                batch.append(msg)
        return self._hold_back_not_due(batch)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        if error.code() != KafkaError._PARTITION_EOF:
            logger.warning("CQRS kafka consumer: %s", error.str())

    def _hold_back_not_due(self, batch: list[Message]) -> list[Message]:
        """Drop retry messages that are not due yet; pause their partition at that offset."""
        now_ms = int(time.time() * 1000)
        kept = []
        for msg in batch:
            where = rec.where(msg)
            if where in self.paused:
                continue
            if msg.topic() == self.retry_topic:
                due = _int(hdr.read(rec.headers(msg)).get(hdr.DUE))
                if due > now_ms:
                    tp = TopicPartition(*where, rec.offset(msg))
                    self.consumer.pause([tp])
                    self.consumer.seek(tp)
                    self.paused[where] = (due, rec.offset(msg))
                    continue
            kept.append(msg)
        return kept

    def _resume_due(self) -> None:
        now_ms = int(time.time() * 1000)
        for where, (due, _offset) in list(self.paused.items()):
            if due <= now_ms:
                del self.paused[where]
                self.consumer.resume([TopicPartition(*where)])

    # -- settling --------------------------------------------------------------------------

    def _handle(self, batch: list[Message]) -> None:
        inbound = []
        for msg in batch:
            headers = hdr.read(rec.headers(msg))
            target = headers.get(hdr.QUEUE)
            inbound.append(
                Inbound(
                    msg.value() or b"",
                    queue=target or None,
                    token=msg,
                    headers=wire.carried_headers(headers),
                )
            )
        settled = self.transport.dispatch(self.handler, inbound, cqrs_ids=self.cqrs_ids)
        self.transport.publisher.send(self._follow_ups(settled))
        self._commit(batch)

    def _follow_ups(self, settled: list[Settled]) -> list[Record]:
        """Records to publish before committing: retries, dead letters, released messages."""
        records = []
        for item in settled:
            kind = item.outcome.kind
            if kind is OutcomeKind.RETRY:
                out = self.transport.retry_message(item)
                records.append(self.transport.retry_record(out, delay=out.delay or 0))
            elif kind is OutcomeKind.DEAD:
                records.append(
                    self.transport.dead_record(self.transport.dead_letter_message(item), item)
                )
            elif kind is OutcomeKind.RELEASE:
                # Only the retry topic mixes CQRS_IDs: hand it back there, a bit later so a
                # consumer limited to other CQRS_IDs does not spin on it.
                msg: Message = item.message.token
                records.append(
                    Record(
                        self.retry_topic,
                        item.message.body,
                        key=_key(msg),
                        headers=_replace_due(msg.headers(), self.transport.common.retry_delay),
                    )
                )
        return records

    def _commit(self, batch: list[Message]) -> None:
        offsets: dict[Partition, int] = {}
        for msg in batch:
            where = rec.where(msg)
            offsets[where] = max(offsets.get(where, -1), rec.offset(msg) + 1)
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            # A rebalance took the partitions: the new owner gets these messages again.
            logger.warning("CQRS kafka: commit failed (%s); messages will be redelivered", exc)


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def _key(msg: Message) -> str | None:
    key = msg.key()
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


def _replace_due(headers: Any, delay: float) -> hdr.Headers:
    kept = [(k, v) for k, v in (headers or ()) if k != hdr.DUE and v is not None]
    return [*kept, (hdr.DUE, str(hdr.due_at(delay)).encode())]
