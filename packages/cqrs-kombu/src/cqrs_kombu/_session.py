"""One connected consumer session: declare, drain in batches, settle, run the delay scheduler.

The transport opens a new session after any broker error, so reconnecting is just "build
another one"; whatever the old one had taken but not settled goes back to the queue.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from amqp.exceptions import AccessRefused, PreconditionFailed
from kombu import Connection, Consumer

from cqrs_core import routing, wire
from cqrs_core.exceptions import ConfigurationError
from cqrs_core.messages import Handler, Inbound, OutcomeKind, Settled
from cqrs_kombu._delay import DUE_HEADER, ID_HEADER, DelayScheduler
from cqrs_kombu._redis import AtomicTaker, Leases
from cqrs_kombu._sender import Sender
from cqrs_kombu._topology import Topology, replica_topology

if TYPE_CHECKING:
    from cqrs_kombu.transport import KombuTransport

logger = logging.getLogger("django-cqrs")

ROUTING_KEY_HEADER = wire.ROUTING_KEY_HEADER
"""Original routing key of a message we moved straight into a queue (release, restore)."""
DEAD_AT_HEADER = wire.DEAD_AT_HEADER
_IDLE_WAIT = 0.5
_POLL_MIN, _POLL_MAX = 0.005, 0.1
_RELEASE_PAUSE = 0.2


class Session:
    """A connection with the replica's topology declared and a consumer started."""

    def __init__(self, transport: KombuTransport, cqrs_ids: Collection[str]) -> None:
        self.transport = transport
        self.common = transport.common
        self.ids = frozenset(cqrs_ids)
        self.own_queue = self.common.require_queue()
        self._directed_prefix = routing.directed_key(self.own_queue, "")
        self.topology: Topology = replica_topology(self.common, self.ids)
        self.connection: Connection = transport.connect()
        self._buffer: list[Any] = []
        try:
            channel = self.connection.channel()
            self.channel = channel
            for queue in (self.topology.main, self.topology.dead, self.topology.delayed):
                queue(channel).declare()
            self.sender = Sender(
                self.connection, self.topology.exchange, amqp=transport.backend.is_amqp
            )
            delay_channel = self.connection.channel()
            self.polling = transport.backend.kind == "redis"
            self.leases: Leases | None = None
            self.taker: AtomicTaker | None = None
            take_delayed = None
            if self.polling:
                # No kombu Consumer (no BRPOP left outstanding): see `_redis`.
                self.taker = AtomicTaker(
                    channel, self.own_queue, prepare=self._pin, on_malformed=self._dead_raw
                )
                take_delayed = AtomicTaker(
                    delay_channel, self.topology.delayed.name, on_malformed=self._dead_raw
                ).take
                self.leases = Leases([channel, delay_channel])
            self.scheduler = DelayScheduler(
                delay_channel,
                self.topology.delayed,
                self._move_due,
                capacity=transport.delay_capacity,
                take=take_delayed,
            )
            if not self.polling:
                self.consumer = Consumer(
                    channel,
                    queues=[self.topology.main],
                    on_message=self._buffer.append,
                    no_ack=False,
                    prefetch_count=self.common.prefetch_count,
                )
                self.consumer.consume()
                if not transport.backend.is_amqp:
                    _pin_to_queue(channel, self.topology.main.name)
        except BaseException as exc:
            # Nobody else holds the connection yet: close it here, or every failed attempt
            # of the consumer's reconnect loop would leave one open.
            self.close(graceful=False)
            if isinstance(exc, _REFUSALS):
                raise ConfigurationError(_refusal_message(exc, transport, self.topology)) from exc
            raise

    # -- loop ------------------------------------------------------------------------------

    def run(self, handler: Handler, on_tick: Callable[[], None] | None) -> None:
        """Drain, dispatch and settle until the transport is stopped."""
        limit = max(1, min(self.common.batch_size, self.common.prefetch_count))
        collect = self._poll if self.polling else self._collect
        while not self.transport.stopping:
            if self.leases is not None:
                self.leases.maintain()
            collect(limit, min(_IDLE_WAIT, self.scheduler.seconds_to_next_due()))
            if self._buffer:
                # AMQP delivers up to the prefetch count at once: never hand over more than
                # batch_size (the rest is the next batch).
                batch, self._buffer[:] = self._buffer[:limit], self._buffer[limit:]
                self._handle(handler, batch)
                del batch  # settled: not kept alive beside the next one (peak RSS)
            self.scheduler.tick()
            if on_tick is not None:
                on_tick()

    def _collect(self, limit: int, idle: float) -> None:
        """Consumer backends: wait up to `idle` for a message, then up to the batch timeout."""
        if len(self._buffer) >= limit:
            return  # left over from the last drain: a full batch is already waiting
        self._drain(0.0 if self._buffer else idle)
        if self._buffer:
            deadline = time.monotonic() + self.common.batch_timeout
            while len(self._buffer) < limit and not self.transport.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._drain(remaining)

    def _drain(self, timeout: float) -> None:
        try:
            self.connection.drain_events(timeout=max(timeout, 0.001))
        except TimeoutError:
            pass

    def _poll(self, limit: int, idle: float) -> None:
        """Redis: non-blocking atomic takes, sleeping 5 ms doubling to 100 ms while empty."""
        assert self.taker is not None
        started = time.monotonic()
        deadline = started + idle
        pause = _POLL_MIN
        while not self.transport.stopping:
            had = len(self._buffer)
            self._buffer += self.taker.take(limit - had)
            if len(self._buffer) >= limit:
                return
            now = time.monotonic()
            if self._buffer and not had:
                deadline = now + self.common.batch_timeout  # the batch starts filling
            if now >= deadline:
                return
            if len(self._buffer) > had:
                pause = _POLL_MIN
            self.transport.wait(min(pause, deadline - now))
            pause = min(pause * 2, _POLL_MAX)

    def _handle(self, handler: Handler, batch: list[Any]) -> None:
        inbound = [
            Inbound(
                _body(message),
                queue=self._target(message),
                token=message,
                headers=wire.carried_headers(message.headers),
            )
            for message in batch
        ]
        settled = self.transport.dispatch(handler, inbound, cqrs_ids=self.ids)
        # Redis: every ack of the batch in one round trip, after the retries, dead letters and
        # give-backs are written (a crash in between redelivers, as with one ack at a time).
        acks: list[Any] | None = [] if self.taker is not None else None
        for item in settled:
            self._settle(item, acks)
        if acks:
            assert self.taker is not None
            self.taker.ack_many(acks)
        if settled and all(item.outcome.kind is OutcomeKind.RELEASE for item in settled):
            self.transport.wait(_RELEASE_PAUSE)  # only others' messages here: don't spin

    def _target(self, message: Any) -> str | None:
        key = _routing_key(message)
        return self.own_queue if key.startswith(self._directed_prefix) else None

    def _pin(self, raw: dict[str, Any]) -> None:
        pin_payload(raw, self.own_queue)

    def _dead_raw(self, item: bytes) -> None:
        """A queue entry that is not a kombu envelope: keep it, as a dead letter."""
        headers = {
            wire.DEAD_REASON_HEADER: "not a kombu message envelope",
            DEAD_AT_HEADER: f"{time.time():.6f}",
        }
        self.sender.direct(item, self.topology.dead.name, headers=headers)

    # -- settling --------------------------------------------------------------------------

    def _settle(self, item: Settled, acks: list[Any] | None = None) -> None:
        """Act on one outcome; the ack is appended to `acks` when given, else sent now."""
        message = item.message.token
        kind = item.outcome.kind
        if kind is OutcomeKind.RETRY:
            retry = self.transport.retry_message(item)
            headers = {
                **retry.headers,
                DUE_HEADER: f"{retry.due:.3f}",
                ID_HEADER: retry.cqrs_id,
            }
            self.sender.direct(retry.body, self.topology.delayed.name, headers=headers)
            self.scheduler.poke()
        elif kind is OutcomeKind.DEAD:
            self.dead_letter(item)
        elif kind is OutcomeKind.RELEASE:
            self.give_back(message, acks)
            return
        if acks is None:
            message.ack()
        else:
            acks.append(message)

    def dead_letter(self, item: Settled) -> None:
        dead = self.transport.dead_letter_message(item)
        headers = {**dead.headers, DEAD_AT_HEADER: f"{time.time():.6f}"}
        dlq = self.topology.dead.name
        ttl = self.common.dead_message_ttl
        if item.payload is None:
            self.sender.direct(dead.body, dlq, headers=headers, expiration=ttl)
        else:
            key = routing.directed_key(dlq, dead.cqrs_id)
            self.sender.publish_or_direct(dead.body, key, dlq, headers=headers, expiration=ttl)

    def give_back(self, message: Any, acks: list[Any] | None = None) -> None:
        """RELEASE: AMQP requeues natively; kombu's virtual requeue would re-route the message
        through the exchange to every bound queue, so it is moved to the tail of ours instead."""
        if self.transport.backend.is_amqp:
            message.requeue()
            return
        headers = {**(message.headers or {}), ROUTING_KEY_HEADER: _routing_key(message)}
        self.sender.direct(_body(message), self.own_queue, headers=headers)
        if acks is None:
            message.ack()
        else:
            acks.append(message)

    def _move_due(self, message: Any) -> None:
        headers = dict(message.headers or {})
        headers.pop(DUE_HEADER, None)
        cqrs_id = str(headers.pop(ID_HEADER, "unknown"))
        key = routing.directed_key(self.own_queue, cqrs_id)
        self.sender.publish_or_direct(_body(message), key, self.own_queue, headers=headers)

    # -- shutdown --------------------------------------------------------------------------

    def try_close(self) -> bool:
        """Close cleanly (giving back unsettled messages); False if the broker is still away."""
        try:
            self.connection.release()
        except Exception:
            logger.debug("CQRS kombu: closing a failed session failed", exc_info=True)
            return False
        return True

    def close(self, *, graceful: bool) -> None:
        """Close the connection; what was taken but not settled goes back to our queue.

        The consumer (AMQP, filesystem) is not cancelled first, and Redis has none: kombu's
        channel close gives back everything recorded as unacknowledged, batch and held retries.
        """
        if graceful:
            try:
                self.connection.release()
                return
            except Exception:
                logger.debug("CQRS kombu: graceful close failed", exc_info=True)
        with contextlib.suppress(Exception):
            self.connection.collect()


_REFUSALS = (AccessRefused, PreconditionFailed)
"""AMQP 403 and 406 while declaring: caused by the settings, reconnecting won't help.

Not 404: the session declares everything it uses, so NOT_FOUND there is transient (a cluster
node holding a durable queue is down, an exchange deleted between declare and bind).
"""


def _refusal_message(exc: BaseException, transport: KombuTransport, topology: Topology) -> str:
    names = ", ".join(repr(name) for name in (topology.exchange.name, *topology.queue_names))
    if isinstance(exc, AccessRefused):
        hint = (
            "grant the user in CQRS['url'] configure, write and read permissions on the "
            "virtual host, or connect as another user"
        )
    else:
        hint = (
            "one of them already exists with other flags or arguments (e.g. not durable): "
            "delete it, or set another CQRS['exchange'], CQRS['queue'] or "
            "CQRS['replica']['dead_letter_queue']"
        )
    return (
        f"The broker at {transport._safe_url()} refused to set up {names} "
        f"({type(exc).__name__}: {exc}); {hint}."
    )


def _pin_to_queue(channel: Any, queue: str) -> None:
    """Make kombu give unsettled messages back to `queue` alone (see `pin_payload`)."""
    callbacks = channel.connection._callbacks
    inner = callbacks[queue]

    def pinned(raw: dict[str, Any]) -> Any:
        pin_payload(raw, queue)
        return inner(raw)

    callbacks[queue] = pinned


def pin_payload(raw: dict[str, Any], queue: str) -> None:
    """Re-address a delivery to `queue` through the default exchange, keeping its key.

    kombu's virtual transports restore an unacknowledged message (on close, after the Redis
    visibility timeout, on requeue) by routing it through the exchange again, which would copy
    a broadcast into every replica's queue. The original key goes into a header.
    """
    info = raw.setdefault("properties", {}).setdefault("delivery_info", {})
    if info.get("exchange"):
        headers = raw.get("headers") or {}
        headers.setdefault(ROUTING_KEY_HEADER, info.get("routing_key") or "")
        raw["headers"] = headers
        info["exchange"], info["routing_key"] = "", queue


def _body(message: Any) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else str(body).encode("utf-8")


def _routing_key(message: Any) -> str:
    headers = message.headers or {}
    return str(headers.get(ROUTING_KEY_HEADER) or message.delivery_info.get("routing_key") or "")
