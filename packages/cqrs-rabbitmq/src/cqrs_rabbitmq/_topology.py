"""Exchanges, queues and bindings of one replica service (wire reference §1, plus retries).

Upstream topology, kept flag for flag so django-cqrs 3.x services can share it:
- exchange `<exchange>`: topic, durable;
- queue `<queue>`: durable, no arguments; bound with `<cqrs_id>` and `cqrs.<queue>.<cqrs_id>`;
- dead-letter queue `<dlq>`: durable, no arguments; bound with `cqrs.<dlq>.<cqrs_id>`.

Added for retries that survive restarts:
- exchange `<exchange>.delay`: direct, durable;
- queue `<queue>.delay`: durable, `x-dead-letter-exchange=<exchange>` and no dead-letter
  routing key, bound with `cqrs.<queue>.<cqrs_id>`. A retry published there with a per-message
  `expiration` is dead-lettered back to `<exchange>` under its own routing key
  `cqrs.<queue>.<cqrs_id>` once the delay has passed, exactly where upstream republishes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from pika.adapters.blocking_connection import BlockingChannel

from cqrs_core import routing


@dataclasses.dataclass(frozen=True, slots=True)
class Topology:
    exchange: str
    queue: str
    dead_letter_queue: str
    delay_exchange: str
    delay_queue: str

    def declare(self, channel: BlockingChannel, cqrs_ids: Collection[str]) -> None:
        """Create everything (idempotent); raises ChannelClosedByBroker on a flag mismatch."""
        channel.exchange_declare(self.exchange, "topic", durable=True)
        channel.queue_declare(self.queue, durable=True)
        channel.queue_declare(self.dead_letter_queue, durable=True)
        channel.exchange_declare(self.delay_exchange, "direct", durable=True)
        channel.queue_declare(
            self.delay_queue, durable=True, arguments={"x-dead-letter-exchange": self.exchange}
        )
        for cqrs_id in sorted(cqrs_ids):
            for key in routing.bindings(self.queue, cqrs_id):
                channel.queue_bind(self.queue, self.exchange, routing_key=key)
            channel.queue_bind(
                self.dead_letter_queue,
                self.exchange,
                routing_key=routing.directed_key(self.dead_letter_queue, cqrs_id),
            )
            channel.queue_bind(
                self.delay_queue,
                self.delay_exchange,
                routing_key=routing.directed_key(self.queue, cqrs_id),
            )

    def inbound_queue(self, routing_key: str) -> str | None:
        """The target queue a delivery's routing key names: ours for `cqrs.<queue>.*`."""
        return self.queue if routing_key.startswith(f"cqrs.{self.queue}.") else None
