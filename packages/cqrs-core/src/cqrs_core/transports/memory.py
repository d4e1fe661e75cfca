"""In-memory transport: the reference implementation and a test double for users' tests.

It keeps the semantics of the broker transports (topic routing by CQRS_ID, directed keys,
delayed retries held by the broker, dead letters with reasons, redelivery of what a consumer
took but did not settle) inside one process. Every transport built with the same
`url` (`memory://<name>`, default `memory://default`) shares one broker; `exchange` separates
topics inside it as on RabbitMQ. A transport dropped without `close()` (a crashed consumer)
gives what it took but did not settle back when it is garbage collected.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

from cqrs_core import codec, routing, wire
from cqrs_core.constants import DEFAULT_EXCHANGE
from cqrs_core.exceptions import PublishError
from cqrs_core.messages import DeadLetter, Handler, Inbound, OutcomeKind, Outgoing, Settled
from cqrs_core.transports.base import BaseTransport, Capability

_IDLE_TICK = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class _Envelope:
    body: bytes
    routing_key: str
    target: str | None
    """Queue a directed message is aimed at (None for a broadcast)."""
    headers: dict[str, Any]
    expires_at: float | None = None
    """Monotonic time after which a dead letter is gone (`dead_message_ttl`)."""


class MemoryBroker:
    """One process-local broker: queues with topic bindings, a delay heap and dead letters."""

    _brokers: ClassVar[dict[str, MemoryBroker]] = {}
    _brokers_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, collections.deque[_Envelope]] = {}
        self._bindings: dict[str, set[str]] = {}
        self._delayed: list[tuple[float, int, str, _Envelope]] = []
        self._dead: dict[str, list[tuple[float | None, DeadLetter]]] = {}
        self._seq = itertools.count()

    @classmethod
    def named(cls, name: str) -> MemoryBroker:
        """The broker called `name`, created on first use."""
        with cls._brokers_lock:
            broker = cls._brokers.get(name)
            if broker is None:
                broker = cls._brokers[name] = cls()
            return broker

    @classmethod
    def drop(cls, name: str) -> None:
        """Forget the broker called `name` and everything in it."""
        with cls._brokers_lock:
            cls._brokers.pop(name, None)

    def bind(self, queue: str, keys: Collection[str]) -> None:
        with self._cond:
            self._queues.setdefault(queue, collections.deque())
            self._bindings.setdefault(queue, set()).update(keys)

    def publish(self, messages: Sequence[tuple[str, _Envelope]]) -> None:
        """Route each `(routing_key, envelope)`; all or nothing, unroutable is an error."""
        with self._cond:
            routes = []
            for key, envelope in messages:
                targets = [q for q, keys in self._bindings.items() if key in keys]
                if not targets:
                    raise PublishError(
                        f"no replica queue is bound for routing key {key!r} (message unroutable)"
                    )
                routes.append((targets, envelope))
            for targets, envelope in routes:
                for queue in targets:
                    self._queues[queue].append(envelope)
            self._cond.notify_all()

    def deliver_later(self, queue: str, envelope: _Envelope, delay: float) -> None:
        with self._cond:
            self._queues.setdefault(queue, collections.deque())
            heapq.heappush(
                self._delayed, (time.monotonic() + delay, next(self._seq), queue, envelope)
            )
            self._cond.notify_all()

    def give_back(self, queue: str, envelopes: Sequence[_Envelope], *, front: bool) -> None:
        with self._cond:
            ready = self._queues.setdefault(queue, collections.deque())
            if front:
                ready.extendleft(reversed(envelopes))
            else:
                ready.extend(envelopes)
            self._cond.notify_all()

    def take(self, queue: str, limit: int, wait: float, linger: float) -> list[_Envelope]:
        """Up to `limit` messages: wait `wait` s for the first, then `linger` s for more."""
        taken: list[_Envelope] = []
        deadline = time.monotonic() + wait
        with self._cond:
            ready = self._queues.setdefault(queue, collections.deque())
            while len(taken) < limit:
                self._promote_due()
                while ready and len(taken) < limit:
                    taken.append(ready.popleft())
                if len(taken) >= limit:
                    break
                now = time.monotonic()
                if taken and deadline > now + linger:
                    deadline = now + linger
                if now >= deadline:
                    break
                timeout = deadline - now
                if self._delayed:
                    timeout = min(timeout, max(self._delayed[0][0] - now, 0.001))
                self._cond.wait(timeout)
        return taken

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, queue, envelope = heapq.heappop(self._delayed)
            self._queues[queue].append(envelope)

    def dead_letter(self, queue: str, letter: DeadLetter, ttl: float | None = None) -> None:
        """Keep `letter`; with `ttl`, only for that many seconds (like a per-message TTL)."""
        expires_at = None if ttl is None else time.monotonic() + ttl
        with self._cond:
            self._dead.setdefault(queue, []).append((expires_at, letter))

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        with self._cond:
            return [letter for _, letter in self._live_dead(queue)]

    def pop_dead_letters(self, queue: str, limit: int | None) -> list[DeadLetter]:
        with self._cond:
            letters = self._live_dead(queue)
            count = len(letters) if limit is None else min(limit, len(letters))
            taken, self._dead[queue] = letters[:count], letters[count:]
            return [letter for _, letter in taken]

    def _live_dead(self, queue: str) -> list[tuple[float | None, DeadLetter]]:
        now = time.monotonic()
        live = [item for item in self._dead.get(queue, ()) if item[0] is None or item[0] > now]
        self._dead[queue] = live
        return live

    def depth(self, queue: str) -> int:
        """Messages waiting in `queue`, delayed ones included."""
        with self._cond:
            delayed = sum(1 for item in self._delayed if item[2] == queue)
            return len(self._queues.get(queue, ())) + delayed


class MemoryTransport(BaseTransport):
    """Process-local transport with the retry, delay and dead-letter semantics of real brokers."""

    name = "memory"
    api_version = 1
    option_keys: ClassVar[Mapping[str, frozenset[str]] | None] = {}
    capabilities = frozenset(
        {
            Capability.DELAYED_RETRY,
            Capability.DEAD_LETTER,
            Capability.REDELIVERY,
            Capability.DEAD_LETTER_TTL,
            Capability.HEADERS,
        }
    )

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        url = self.common.url or "memory://default"
        if not url.startswith("memory://"):
            raise PublishError(f"the memory transport needs a memory:// url, got {url!r}")
        self.broker = MemoryBroker.named(url[len("memory://") :] or "default")
        self._unacked: list[_Envelope] = []
        self._lock = threading.Lock()
        if self.common.queue:
            # A consumer dropped without close() (it "crashed"): what it took goes back.
            weakref.finalize(self, _give_back_lost, self.broker, self._queue, self._unacked)

    @property
    def _queue(self) -> str:
        """The replica queue's name inside the broker."""
        return self._route(self.common.require_queue())

    @property
    def _dead_queue(self) -> str:
        return self._route(self.common.require_dead_letter_queue())

    def _route(self, name: str) -> str:
        """`name` inside this transport's exchange: exchanges share no keys and no queues.

        Names in the default exchange stay bare, so tests can look at `broker.depth("replica")`.
        """
        exchange = self.common.exchange
        return name if exchange == DEFAULT_EXCHANGE else f"{exchange}/{name}"

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        self.broker.publish(
            [
                (self._route(key), _Envelope(m.body, key, m.queue, dict(m.headers)))
                for m in messages
                for key in (routing.message_key(m.cqrs_id, m.queue),)
            ]
        )

    def declare(self, cqrs_ids: Collection[str]) -> None:
        queue = self.common.require_queue()
        keys = {
            self._route(key) for cqrs_id in cqrs_ids for key in routing.bindings(queue, cqrs_id)
        }
        self.broker.bind(self._queue, keys)

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        queue = self._queue
        # Never more taken unsettled than the prefetch allows, as a broker would enforce.
        limit = min(self.common.batch_size, self.common.prefetch_count)
        self.declare(cqrs_ids)
        if on_ready is not None:
            on_ready()
        while not self.stopping:
            batch = self.broker.take(queue, limit, _IDLE_TICK, self.common.batch_timeout)
            if batch:
                with self._lock:
                    self._unacked.extend(batch)
                inbound = [
                    Inbound(
                        e.body, queue=e.target, token=e, headers=wire.carried_headers(e.headers)
                    )
                    for e in batch
                ]
                self._settle(queue, self.dispatch(handler, inbound, cqrs_ids=cqrs_ids))
            if on_tick is not None:
                on_tick()

    def _settle(self, queue: str, settled: list[Settled]) -> None:
        for item in settled:
            envelope: _Envelope = item.message.token
            kind = item.outcome.kind
            if kind is OutcomeKind.RETRY:
                retry = self.retry_message(item)
                key = routing.message_key(retry.cqrs_id, retry.queue)
                self.broker.deliver_later(
                    queue,
                    _Envelope(retry.body, key, retry.queue, dict(retry.headers)),
                    retry.delay or 0,
                )
            elif kind is OutcomeKind.DEAD:
                dead = self.dead_letter_message(item)
                # In process, the full reason is kept (headers would carry wire.header_reason).
                self.broker.dead_letter(
                    self._dead_queue,
                    DeadLetter(dead.body, item.outcome.reason, item.payload),
                    self.common.dead_message_ttl,
                )
            elif kind is OutcomeKind.RELEASE:
                self.broker.give_back(queue, [envelope], front=False)
            with self._lock:
                self._unacked.remove(envelope)

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        letters = self.broker.dead_letters(self._dead_queue)
        return letters if limit is None else letters[:limit]

    def retry_dead_letters(self, *, limit: int | None = None) -> int:
        queue = self.common.require_queue()
        letters = self.broker.pop_dead_letters(self._dead_queue, limit)
        for letter in letters:
            body, payload = codec.revive(letter.body)
            key = routing.directed_key(queue, payload.cqrs_id if payload else "unknown")
            self.broker.give_back(self._queue, [_Envelope(body, key, queue, {})], front=False)
        return len(letters)

    def purge_dead_letters(self) -> int:
        return len(self.broker.pop_dead_letters(self._dead_queue, None))

    def _close(self) -> None:
        if self.common.queue:
            _give_back_lost(self.broker, self._queue, self._unacked, self._lock)


def _give_back_lost(
    broker: MemoryBroker,
    queue: str,
    unacked: list[_Envelope],
    lock: threading.Lock | None = None,
) -> None:
    """Hand what a consumer took but never settled back to the head of its queue."""
    with lock or threading.Lock():
        taken = list(unacked)
        unacked.clear()
    if taken:
        broker.give_back(queue, taken, front=True)
