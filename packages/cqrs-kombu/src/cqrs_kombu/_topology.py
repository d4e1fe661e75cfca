"""Exchange, queues and bindings of the wire reference, as kombu entities."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from kombu import Exchange, Queue, binding

from cqrs_core import routing
from cqrs_core.options import CommonOptions

DELAYED_PREFIX = "delayed_"
"""Queue `delayed_<queue>` holds this replica's pending retries until they are due."""


def exchange_for(common: CommonOptions) -> Exchange:
    """The topic exchange every service declares with identical flags."""
    return Exchange(common.exchange, type="topic", durable=True, auto_delete=False)


@dataclasses.dataclass(frozen=True)
class Topology:
    """The replica's queue, dead-letter queue and delay queue with their bindings."""

    exchange: Exchange
    main: Queue
    dead: Queue
    delayed: Queue

    @property
    def queue_names(self) -> tuple[str, str, str]:
        return (self.main.name, self.dead.name, self.delayed.name)


def replica_topology(common: CommonOptions, cqrs_ids: Collection[str]) -> Topology:
    """Durable queues without arguments; bindings `<id>`, `cqrs.<q>.<id>`, `cqrs.<dlq>.<id>`."""
    exchange = exchange_for(common)
    queue = common.require_queue()
    dlq = common.require_dead_letter_queue()
    ids = sorted(cqrs_ids)
    main_keys = [key for cqrs_id in ids for key in routing.bindings(queue, cqrs_id)]
    dead_keys = [routing.directed_key(dlq, cqrs_id) for cqrs_id in ids]
    return Topology(
        exchange=exchange,
        main=_queue(queue, exchange, main_keys),
        dead=_queue(dlq, exchange, dead_keys),
        delayed=_queue(DELAYED_PREFIX + queue, exchange, []),
    )


def _queue(name: str, exchange: Exchange, keys: list[str]) -> Queue:
    return Queue(
        name,
        bindings=[binding(exchange, routing_key=key) for key in keys],
        durable=True,
        auto_delete=False,
        exclusive=False,
    )
