"""Typed views of a consumed record.

confluent-kafka types `Message.topic()`, `partition()`, `offset()` and `headers()` as optional
because error events and not-yet-produced messages lack them. A record that `consume()` returned
without `error()` always has all of them, with headers as a list of `(str, bytes | None)`; these
helpers say so once instead of checking for None at every use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from confluent_kafka import Message

Partition = tuple[str, int]
"""(topic, partition) of a record."""


def where(msg: Message) -> Partition:
    """Topic and partition of a consumed record."""
    return cast(Partition, (msg.topic(), msg.partition()))


def offset(msg: Message) -> int:
    """Offset of a consumed record."""
    return cast(int, msg.offset())


def headers(msg: Message) -> Sequence[tuple[str, bytes | None]] | None:
    """Headers of a consumed record, as librdkafka returns them."""
    return cast("Sequence[tuple[str, bytes | None]] | None", msg.headers())
