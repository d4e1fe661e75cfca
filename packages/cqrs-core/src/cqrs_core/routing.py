"""Routing keys of the wire reference (§1), shared by every topic-style transport."""

from __future__ import annotations

from cqrs_core.payload import TransportPayload

_DIRECT_PREFIX = "cqrs."


def routing_key(payload: TransportPayload) -> str:
    """`<cqrs_id>` for broadcasts, `cqrs.<queue>.<cqrs_id>` for an event aimed at one queue."""
    return message_key(payload.cqrs_id, payload.queue)


def message_key(cqrs_id: str, queue: str | None = None) -> str:
    """Key of an encoded message (`Outgoing.cqrs_id`, `Outgoing.queue`): directed when aimed."""
    return directed_key(queue, cqrs_id) if queue else cqrs_id


def directed_key(queue: str, cqrs_id: str) -> str:
    """Key of a message aimed at one queue: a directed SYNC, a retry or a dead letter."""
    return f"{_DIRECT_PREFIX}{queue}.{cqrs_id}"


def bindings(queue: str, cqrs_id: str) -> tuple[str, str]:
    """Binding keys a replica queue needs for one CQRS_ID: broadcasts and its own directed keys."""
    return cqrs_id, directed_key(queue, cqrs_id)


def target_queue(key: str, cqrs_id: str) -> str | None:
    """The queue a routing key aims at (`cqrs.<queue>.<cqrs_id>`), or None for a broadcast."""
    suffix = f".{cqrs_id}"
    if key.startswith(_DIRECT_PREFIX) and key.endswith(suffix):
        return key[len(_DIRECT_PREFIX) : -len(suffix)] or None
    return None
