"""`KombuTransport`: CQRS over any kombu broker URL (AMQP, Redis, filesystem, SQS, ...).

Over AMQP it speaks the wire reference exactly (topic exchange, durable queues without
arguments, the same routing keys and properties), so it interoperates with django-cqrs 3.x
services on either of their transports. Retries wait in a broker-side delay queue and dead
letters in `dead_letter_<queue>` on every backend; see the README for what is native where.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from kombu import Connection, Queue

from cqrs_core import codec, routing, wire
from cqrs_core.exceptions import ConfigurationError, MalformedMessage, PublishError
from cqrs_core.messages import DeadLetter, Handler, Outgoing
from cqrs_core.transports.base import BaseTransport, Capability
from cqrs_kombu._backend import OPTION_KEYS, Backend, backend_from_options, check_options
from cqrs_kombu._sender import Sender, Unroutable
from cqrs_kombu._session import DEAD_AT_HEADER, Session
from cqrs_kombu._topology import exchange_for, replica_topology

logger = logging.getLogger("django-cqrs")

_CONNECT_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
"""Producer side: give up quickly so the caller gets a PublishError instead of a hang."""
_BROWSE_CAP = 100_000
_DEFAULT_DELAY_CAPACITY = 1000


class KombuTransport(BaseTransport):
    """Replication over kombu: one URL reaches RabbitMQ, Redis, a shared folder, SQS, ...

    Options (the `CQRS` mapping): `url` (any kombu URL, e.g. `amqp://...`, `redis://...`,
    `filesystem:///srv/cqrs`), `transport_options` (passed to kombu; for filesystem also
    `data_folder_in`/`data_folder_out`/`control_folder`/`processed_folder`),
    `consumer_prefetch_count`, `connect_timeout`, and the common CQRS keys. On Redis,
    `transport_options['visibility_timeout']` (default 60 s) is how long a dead consumer's
    messages stay invisible before they are given back.
    """

    name = "kombu"
    api_version = 1
    capabilities = frozenset(
        {
            Capability.DELAYED_RETRY,
            Capability.DEAD_LETTER,
            Capability.REDELIVERY,
            Capability.HEADERS,
        }
    )
    option_keys = OPTION_KEYS
    check_options = staticmethod(check_options)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.backend: Backend = backend_from_options(self.options)
        self.delay_capacity = _delay_capacity(self.options)
        self._lock = threading.Lock()
        self._sender: Sender | None = None
        self._exchange = exchange_for(self.common)

    # -- connections -----------------------------------------------------------------------

    def connect(self, **policy: Any) -> Connection:
        """A new connected kombu Connection (raises the broker's error if unreachable)."""
        connection = Connection(self.backend.url, **self.backend.connection_kwargs())
        try:
            connection.ensure_connection(
                **{**_CONNECT_POLICY, **policy, "timeout": self.backend.connect_timeout * 3}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                connection.collect()
            raise
        return connection

    def wait(self, seconds: float) -> None:
        """Sleep, waking up early on `stop()`."""
        self._stopping.wait(seconds)

    # -- producing -------------------------------------------------------------------------

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        with self._lock:
            try:
                sender = self._producer()
                publish_all = sender.connection.ensure(
                    sender.producer, self._publish_all, **_CONNECT_POLICY
                )
                publish_all(sender, messages)
            except Unroutable as exc:
                raise PublishError(
                    f"no replica queue is bound for routing key {exc} on exchange "
                    f"{self.common.exchange!r} (message unroutable): start the replica "
                    "service, or declare its queue, before publishing"
                ) from None
            except Exception as exc:
                self._drop_producer()
                raise PublishError(
                    f"kombu could not publish to {self._safe_url()}: {type(exc).__name__}: {exc}"
                ) from exc

    @staticmethod
    def _publish_all(sender: Sender, messages: Sequence[Outgoing]) -> None:
        with sender.batch():
            for message in messages:
                key = routing.message_key(message.cqrs_id, message.queue)
                sender.publish(message.body, key, headers=message.headers)

    def _producer(self) -> Sender:
        """The long-lived producer, reused by every publish (reconnected after errors)."""
        if self._sender is None:
            connection = self.connect()
            self._sender = Sender(connection, self._exchange, amqp=self.backend.is_amqp)
        return self._sender

    def _drop_producer(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):
                sender.connection.collect()

    def _safe_url(self) -> str:
        with contextlib.suppress(Exception):
            return Connection(self.backend.url).as_uri()
        return "the broker"

    # -- consuming -------------------------------------------------------------------------

    def declare(self, cqrs_ids: Collection[str]) -> None:
        topology = replica_topology(self.common, cqrs_ids)
        with self._admin() as channel:
            for queue in (topology.main, topology.dead, topology.delayed):
                queue(channel).declare()

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        ids = cqrs_ids
        ready = False
        backoff = 0.2
        stale: list[Session] = []
        while not self.stopping:
            session: Session | None = None
            graceful = True
            try:
                session = Session(self, ids)
                self._give_back_stale(stale)
                if not ready:
                    ready = True
                    if on_ready is not None:
                        on_ready()
                backoff = 0.2
                session.run(handler, on_tick)
            except ConfigurationError:  # the broker refused our settings: reconnecting won't help
                self._give_back_stale(stale, last_chance=True)
                raise
            except Exception as exc:  # a broker error must never end the worker
                graceful = False
                logger.warning(
                    "CQRS kombu consumer lost %s (%s: %s); reconnecting in %.1f s",
                    self._safe_url(),
                    type(exc).__name__,
                    exc,
                    backoff,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
            finally:
                if session is not None:
                    if graceful or self.backend.is_amqp:
                        session.close(graceful=graceful)
                    else:
                        stale.append(session)
            if not graceful:
                if on_tick is not None:
                    on_tick()
                self.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self._give_back_stale(stale, last_chance=True)

    @staticmethod
    def _give_back_stale(stale: list[Session], *, last_chance: bool = False) -> None:
        """Close sessions that failed, once the broker answers again.

        A broken AMQP connection makes the broker requeue what it delivered; kombu's virtual
        transports (Redis...) only give unacknowledged messages back when the channel closes
        cleanly (or after the visibility timeout), so that close is retried after reconnecting.
        """
        for old in list(stale):
            if old.try_close() or last_chance:
                stale.remove(old)

    # -- dead letters ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _admin(self) -> Iterator[Any]:
        connection = self.connect()
        try:
            yield connection.channel()
        finally:
            with contextlib.suppress(Exception):
                connection.release()

    def _dead_queue(self) -> Queue:
        return replica_topology(self.common, ()).dead

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        letters: list[tuple[float, int, DeadLetter]] = []
        cap = _BROWSE_CAP if limit is None else limit
        connection = self.connect()
        try:
            channel = connection.channel()
            queue = self._dead_queue()(channel)
            queue.declare()
            while len(letters) < cap:
                message = queue.get(no_ack=False)
                if message is None:
                    break
                letters.append(_letter(message, len(letters)))
            channel.close()  # nothing was acknowledged: every letter goes back
        finally:
            with contextlib.suppress(Exception):
                connection.release()
        return [letter for _, _, letter in sorted(letters, key=lambda item: item[:2])]

    def retry_dead_letters(self, *, limit: int | None = None) -> int:
        own = self.common.require_queue()
        count = 0
        connection = self.connect()
        try:
            channel = connection.channel()
            topology = replica_topology(self.common, ())
            for queue in (topology.main, topology.dead):
                queue(channel).declare()
            dead = topology.dead(channel)
            sender = Sender(connection, self._exchange, amqp=self.backend.is_amqp)
            while limit is None or count < limit:
                message = dead.get(no_ack=False)
                if message is None:
                    break
                body = message.body if isinstance(message.body, bytes) else message.body.encode()
                body, payload = codec.revive(body)
                if payload is None:
                    sender.direct(body, own)
                else:
                    key = routing.directed_key(own, payload.cqrs_id)
                    sender.publish_or_direct(body, key, own)
                message.ack()
                count += 1
        finally:
            with contextlib.suppress(Exception):
                connection.release()
        return count

    def purge_dead_letters(self) -> int:
        with self._admin() as channel:
            queue = self._dead_queue()(channel)
            queue.declare()
            return int(queue.purge() or 0)

    # -- lifecycle -------------------------------------------------------------------------

    def _close(self) -> None:
        with self._lock:
            sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):
                sender.connection.release()


def _delay_capacity(options: Mapping[str, Any]) -> int:
    """`CQRS['replica']['delay_queue_max_size']`: an integer >= 1 (default 1000).

    0 or less would stop the delay scheduler from ever taking a retry back.
    """
    replica = options.get("replica") or {}  # a dict: `CommonOptions` has checked
    value = replica.get("delay_queue_max_size")
    if value is None:
        return _DEFAULT_DELAY_CAPACITY
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"CQRS['replica']['delay_queue_max_size'] must be an integer >= 1, got {value!r}."
        )
    return value


def _letter(message: Any, seq: int) -> tuple[float, int, DeadLetter]:
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    headers = message.headers or {}
    try:
        payload = codec.decode(body, default_ttl=None)
    except MalformedMessage:
        payload = None
    try:
        dead_at = float(headers.get(DEAD_AT_HEADER, 0))
    except (TypeError, ValueError):
        dead_at = 0.0
    reason = wire.read_reason(headers)
    return dead_at, seq, DeadLetter(body, reason, payload)


__all__ = ["KombuTransport"]
