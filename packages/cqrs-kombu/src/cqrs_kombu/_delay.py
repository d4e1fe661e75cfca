"""Delayed retries that live on the broker, for backends without delayed delivery.

A retry is put into the replica's `delayed_<queue>` with an `x-cqrs-due` header (epoch seconds).
The consumer takes those messages without acknowledging them, keeps them in a heap until they
are due, then republishes them to `cqrs.<queue>.<cqrs_id>` and acknowledges them. A consumer
that stops or dies leaves them unacknowledged, so the broker hands them to the next one: a
pending retry survives a restart.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

from kombu import Queue

DUE_HEADER = "x-cqrs-due"
ID_HEADER = "x-cqrs-id"
_FETCH_EVERY = 0.2


class DelayScheduler:
    """Moves due messages from the delay queue back to the replica queue."""

    def __init__(
        self,
        channel: Any,
        queue: Queue,
        move: Callable[[Any], None],
        *,
        capacity: int,
        take: Callable[[int], list[Any]] | None = None,
    ) -> None:
        self._bound = queue(channel)
        self._take = take or self._get_one
        self._move = move
        self._capacity = capacity
        self._held: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._next_fetch = 0.0

    def poke(self) -> None:
        """Fetch on the next tick (a retry was just scheduled)."""
        self._next_fetch = 0.0

    def seconds_to_next_due(self) -> float:
        if not self._held:
            return float("inf")
        return max(self._held[0][0] - time.time(), 0.0)

    def tick(self) -> None:
        """Take new delayed messages (rate limited) and release those that are due."""
        now = time.monotonic()
        if now >= self._next_fetch:
            self._next_fetch = now + _FETCH_EVERY
            while len(self._held) < self._capacity:
                taken = self._take(self._capacity - len(self._held))
                for message in taken:
                    heapq.heappush(self._held, (_due(message), next(self._seq), message))
                if not taken:
                    break
        wall = time.time()
        while self._held and self._held[0][0] <= wall:
            _, _, message = heapq.heappop(self._held)
            self._move(message)
            message.ack()

    def _get_one(self, limit: int) -> list[Any]:
        message = self._bound.get(no_ack=False)
        return [] if message is None else [message]


def _due(message: Any) -> float:
    try:
        return float((message.headers or {}).get(DUE_HEADER, 0))
    except (TypeError, ValueError):
        return 0.0
