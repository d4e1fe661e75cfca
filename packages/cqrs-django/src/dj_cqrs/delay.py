"""`DelayMessage` and `DelayQueue` of django-cqrs 3.x: messages waiting for their retry time.

Our transports keep retries on the broker; these classes stay for custom 3.x-style transports
that hold retries in memory, with 3.x's methods and ordering (earliest `eta` first).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import datetime
from queue import Full, PriorityQueue
from typing import Any

from django.utils import timezone

__all__ = ["DelayMessage", "DelayQueue"]


class DelayMessage:
    """A message to requeue after `eta`.

    Args:
        delivery_tag: The broker's delivery tag of the message.
        payload: Its `TransportPayload`.
        eta: When it should be requeued (an aware datetime).
    """

    def __init__(self, delivery_tag: Any, payload: Any, eta: datetime) -> None:
        self.delivery_tag = delivery_tag
        self.payload = payload
        self.eta = eta

    def __repr__(self) -> str:
        return f"DelayMessage(delivery_tag={self.delivery_tag!r}, eta={self.eta.isoformat()})"


class DelayQueue:
    """Delayed messages ordered by `eta`; `put` raises `queue.Full` beyond `max_size`.

    Args:
        max_size: Most messages it holds; None for no limit.

    Raises:
        ValueError: `max_size` is not a positive integer.
    """

    def __init__(self, max_size: int | None = None) -> None:
        if max_size is not None and (not isinstance(max_size, int) or max_size <= 0):
            raise ValueError(
                f"DelayQueue max_size must be a positive integer or None, got {max_size!r} "
                "(CQRS['replica']['delay_queue_max_size'])."
            )
        self._max_size = max_size
        self._queue: PriorityQueue[tuple[float, int, DelayMessage]] = PriorityQueue()
        self._order = itertools.count()  # equal etas keep their insertion order
        self._lock = threading.Lock()

    def get(self) -> DelayMessage:
        """Remove and return the message with the earliest eta (blocks while empty)."""
        return self._queue.get()[-1]

    def get_ready(self) -> Iterator[DelayMessage]:
        """Yield, removing them, the messages whose eta has passed, earliest first."""
        while self.qsize():
            message = self.get()
            if message.eta > timezone.now():
                self.put(message)  # the rest are later still
                break
            yield message

    def put(self, delay_message: DelayMessage) -> None:
        """Add a message.

        Raises:
            TypeError: it is not a `DelayMessage`.
            queue.Full: the queue holds `max_size` messages already.
        """
        if not isinstance(delay_message, DelayMessage):
            raise TypeError(f"DelayQueue holds DelayMessage objects, got {delay_message!r}")
        with self._lock:
            if self.full():
                raise Full("Delay queue is full")
            self._queue.put((delay_message.eta.timestamp(), next(self._order), delay_message))

    def qsize(self) -> int:
        """How many messages wait."""
        return self._queue.qsize()

    def full(self) -> bool:
        """Whether `put` would raise `queue.Full`."""
        return self._max_size is not None and self.qsize() >= self._max_size
