"""The contract every CQRS transport implements."""

from __future__ import annotations

import abc
import enum
import logging
import re
import threading
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from cqrs_core import codec, wire
from cqrs_core.exceptions import MalformedMessage, TransportClosed, TransportLoadError
from cqrs_core.messages import (
    DeadLetter,
    Handler,
    Inbound,
    Outcome,
    Outgoing,
    Settled,
    handler_decides_unlisted_ids,
)
from cqrs_core.options import CommonOptions, Problem
from cqrs_core.payload import TransportPayload
from cqrs_core.retry import RetryPolicy

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

TRANSPORT_API_VERSION = 1
"""Incremented only when the BaseTransport contract changes incompatibly."""

logger = logging.getLogger("django-cqrs")

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*\Z")


class Capability(str, enum.Enum):
    """Optional behaviours; the conformance suite skips tests a transport does not claim."""

    DELAYED_RETRY = "delayed_retry"
    """Retries wait their delay on the broker and survive a consumer restart."""
    DEAD_LETTER = "dead_letter"
    """Dead letters are kept and can be dumped, retried and purged."""
    REDELIVERY = "redelivery"
    """A message taken by a consumer that dies before settling it is delivered again."""
    HEADERS = "headers"
    """Context headers (`TransportPayload.headers`: W3C trace context) reach the consumer's
    handler; the body stays as django-cqrs 3.x wrote it."""
    DEAD_LETTER_TTL = "dead_letter_ttl"
    """Dead letters expire after `CQRS['replica']['dead_message_ttl']` seconds.

    Claim it only if the broker can expire single messages (RabbitMQ can, Kafka cannot).
    """


class BaseTransport(abc.ABC):
    """Base class for transports found via the `cqrs_core.transports` entry points.

    A transport is built from the user's `CQRS` mapping (`options`). Masters call `produce` /
    `produce_many`; replicas call `consume(handler, cqrs_ids=...)`, which blocks until `stop()`.
    Subclasses implement `_publish`, `_consume`, `_close` and, with `Capability.DEAD_LETTER`,
    the dead-letter operations; `dispatch` does the decoding, expiry and retry decisions and
    `retry_message` / `dead_letter_message` the wire bookkeeping, so every transport behaves
    alike.

    Threads (one instance is used by several at once):

    - `consume` runs in one thread and blocks there; `_consume`, the handler, `on_ready` and
      `on_tick` all run in that thread. It is never called twice at the same time.
    - `stop()` comes from any other thread (a signal handler, a supervisor, a test) while
      `consume` runs. It only sets `stopping`; `_consume` must notice within about a second, so
      wait on the broker with short timeouts (or on `self._stopping`, a `threading.Event`).
    - `produce` / `produce_many` (hence `_publish`) come from many threads at once: request
      threads, the outbox's background publisher, and handlers inside `consume`. Make `_publish`
      thread-safe (a lock, or a connection per thread).
    - `declare`, `dead_letters`, `retry_dead_letters` and `purge_dead_letters` come from other
      threads (management commands, tests) while `consume` may be running: don't use the
      consuming thread's connection for them.
    - `close()` comes from any thread, once; unsettled messages go back to the broker.
    - After `os.fork()` the child builds its own instance and never uses the parent's: open
      connections lazily, never in `__init__`, and don't rely on threads started before.

    An asyncio-only client library fits through `cqrs_core.transports.asyncio_bridge`.
    """

    name: ClassVar[str]
    """Entry-point name users put in settings, e.g. `"kafka"`."""

    api_version: ClassVar[int]
    """Contract version the transport was written against: the literal, e.g. `api_version = 1`.

    Required, with no default: a default would claim every future contract too. Write the number
    of `TRANSPORT_API_VERSION` you developed and tested with, not the constant itself (which
    would follow cqrs-core upgrades the transport was never tested against).
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    """Optional behaviours this transport supports."""

    option_keys: ClassVar[Mapping[str, frozenset[str]] | None] = None
    """`CQRS` keys this transport reads beyond `cqrs_core.options.COMMON_KEYS`, by section
    (`""`: top level, `"rabbitmq"`: `CQRS['rabbitmq']`); `{}` when it reads no others. Settings
    checks accept them instead of reporting them as unknown, and the settings reference must
    describe them. None (not declared): unknown top-level keys are only warnings, since the
    transport may read them."""

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[Problem]:
        """Mistakes in the settings this transport reads: its sections' keys, values, `url`.

        Called by `manage.py check` before any transport is built; must not connect to or
        create anything. Unknown top-level keys are found by the caller (from `option_keys`),
        unknown keys inside the transport's own sections by this method. Default: none.
        """
        return []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is not None and not _NAME_RE.match(name):
            raise TypeError(
                f"{cls.__qualname__}.name must match {_NAME_RE.pattern!r}, got {name!r}"
            )
        if "consume" in cls.__dict__ and not _defines(cls, "_consume"):
            # A transport written before `consume` became a template method: keep it working.
            warnings.warn(
                f"{cls.__qualname__} overrides BaseTransport.consume(); implement _consume() "
                "instead (consume() now checks the transport is open, requires CQRS['queue'] "
                "and resets stop() before calling it). Overriding consume() stops working with "
                "transport API 2.",
                DeprecationWarning,
                stacklevel=3,
            )
            cls._consume = _legacy_consume  # type: ignore[method-assign]

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        check_api_version(type(self))
        self.options: Mapping[str, Any] = dict(options or {})
        self.common = CommonOptions.from_mapping(self.options)
        self.retry_policy = RetryPolicy(
            max_retries=self.common.max_retries, delay=self.common.retry_delay
        )
        self._closed = False
        self._stopping = threading.Event()

    # -- producing -------------------------------------------------------------------------

    def produce(self, payload: TransportPayload) -> None:
        """Send one payload to replicas; returns once the broker has accepted it.

        Raises:
            PublishError: the broker did not accept it (the caller may retry).
            TransportClosed: after `close()`.
        """
        self.produce_many((payload,))

    def produce_many(self, payloads: Iterable[TransportPayload]) -> None:
        """Send several payloads, letting the transport pipeline confirms; all or an error."""
        self._check_open()
        self._publish([self.outgoing(payload) for payload in payloads])

    def outgoing(self, payload: TransportPayload) -> Outgoing:
        """Encode `payload` for `_publish`."""
        return Outgoing(
            body=codec.encode(payload),
            cqrs_id=payload.cqrs_id,
            queue=payload.queue,
            payload=payload,
            headers=dict(payload.headers),
        )

    @abc.abstractmethod
    def _publish(self, messages: Sequence[Outgoing]) -> None:
        """Hand encoded messages to the broker and wait until it has accepted every one."""

    # -- consuming -------------------------------------------------------------------------

    def declare(self, cqrs_ids: Collection[str]) -> None:  # noqa: B027 (optional hook)
        """Create this replica's queue and bindings, so what is published from now on is kept.

        `consume` declares too; call this to set a replica up before its consumer first runs.
        """

    def consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: Collection[str],
        on_ready: Callable[[], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """Receive messages for `cqrs_ids` and feed them to `handler` in batches, until `stop()`.

        The set-up every transport needs is done here (the transport is open, `CQRS['queue']`
        is set, a previous `stop()` is forgotten); the broker work is `_consume`.

        Args:
            handler: Applies a batch; see `cqrs_core.messages.Handler`.
            cqrs_ids: The CQRS_IDs to bind and apply; messages for others that reach the queue
                are given back (RELEASE), never lost.
            on_ready: Called once connected and bound.
            on_tick: Called after every batch and at least once a second while idle
                (liveness probes).

        Raises:
            TransportClosed: after `close()`.
            ConfigurationError: `CQRS['queue']` is not set.
        """
        self._check_open()
        self.common.require_queue()
        self._stopping.clear()
        self._consume(handler, cqrs_ids=frozenset(cqrs_ids), on_ready=on_ready, on_tick=on_tick)

    @abc.abstractmethod
    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        """The consume loop: bind, call `on_ready`, then take batches, `dispatch` and settle
        them, calling `on_tick`, until `self.stopping`. Runs in the consuming thread."""

    def stop(self) -> None:
        """Ask a running `consume` to return after the batch in hand; safe from any thread."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def dispatch(
        self, handler: Handler, messages: Sequence[Inbound], *, cqrs_ids: Collection[str] | None
    ) -> list[Settled]:
        """Decode `messages`, let `handler` apply the valid ones, and decide each outcome.

        Malformed and expired messages become DEAD without reaching the handler; a SYNC aimed
        at another queue is SKIPPED; a CQRS_ID outside `cqrs_ids` is RELEASEd, unless the
        handler is marked with `cqrs_core.messages.decides_unlisted_ids` (then it decides). A
        handler that raises fails the whole batch, which is then retried by the retry policy.
        """
        own_queue = self.common.queue
        if cqrs_ids is not None and handler_decides_unlisted_ids(handler):
            cqrs_ids = None
        decided: list[Settled | None] = []
        to_apply: list[TransportPayload] = []
        slots: list[int] = []
        ttl = self.common.message_ttl
        now = datetime.now(timezone.utc)  # one clock reading for the batch's expiry checks
        for message in messages:
            try:
                payload = codec.decode(
                    message.body,
                    queue=message.queue,
                    default_ttl=ttl,
                    headers=message.headers,
                )
            except MalformedMessage as exc:
                decided.append(Settled(message, None, Outcome.dead(f"malformed message: {exc}")))
                continue
            if cqrs_ids is not None and payload.cqrs_id not in cqrs_ids:
                decided.append(Settled(message, payload, Outcome.release()))
            elif payload.queue and own_queue and payload.queue != own_queue:
                decided.append(
                    Settled(message, payload, Outcome.skipped(f"aimed at {payload.queue}"))
                )
            elif payload.is_expired(now=now):
                decided.append(Settled(message, payload, Outcome.dead("expired")))
            else:
                slots.append(len(decided))
                decided.append(None)
                to_apply.append(payload)
        if to_apply:
            applied = self._apply(handler, to_apply)
            for slot, payload, outcome in zip(slots, to_apply, applied, strict=True):
                decided[slot] = Settled(messages[slot], payload, outcome)
        return [item for item in decided if item is not None]

    def _apply(self, handler: Handler, payloads: list[TransportPayload]) -> list[Outcome]:
        try:
            outcomes = list(handler(payloads))
            if len(outcomes) != len(payloads):
                raise TypeError(
                    f"handler returned {len(outcomes)} outcomes for {len(payloads)} payloads"
                )
            wrong = next((o for o in outcomes if not isinstance(o, Outcome)), None)
            if wrong is not None:
                raise TypeError(f"handler returned {wrong!r} instead of an Outcome")
        except Exception as exc:
            logger.exception("CQRS handler failed on a batch of %d message(s)", len(payloads))
            reason = f"{type(exc).__name__}: {exc}"
            return [self.retry_policy.on_failure(payload, reason) for payload in payloads]
        return [self.retry_policy.resolve(p, o) for p, o in zip(payloads, outcomes, strict=True)]

    def retry_message(self, settled: Settled) -> Outgoing:
        """The message to republish for a RETRY: same body with `retries + 1`, aimed at us."""
        assert settled.payload is not None, "only decoded payloads can be retried"
        payload = settled.payload.retried()
        delay = max(settled.outcome.delay or 0.0, 0.0)
        return Outgoing(
            body=codec.encode(payload),
            cqrs_id=payload.cqrs_id,
            queue=self.common.require_queue(),
            payload=payload,
            headers={
                **payload.headers,
                wire.RETRY_REASON_HEADER: wire.header_reason(settled.outcome.reason),
            },
            delay=delay,
            due=wire.due_at(delay),
        )

    def dead_letter_message(self, settled: Settled) -> Outgoing:
        """The message to store for a DEAD outcome: the body as received, plus the reason."""
        payload = settled.payload
        return Outgoing(
            body=settled.message.body,
            cqrs_id=payload.cqrs_id if payload is not None else "unknown",
            queue=self.common.require_dead_letter_queue(),
            payload=payload,
            headers={wire.DEAD_REASON_HEADER: wire.header_reason(settled.outcome.reason)},
        )

    # -- dead letters ----------------------------------------------------------------------

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters of this replica's queue, oldest first, without removing them."""
        raise NotImplementedError(f"the {self.name!r} transport does not keep dead letters")

    def retry_dead_letters(self, *, limit: int | None = None) -> int:
        """Send dead letters back to this replica's queue with `retries` reset; return how many."""
        raise NotImplementedError(f"the {self.name!r} transport does not keep dead letters")

    def purge_dead_letters(self) -> int:
        """Delete every dead letter of this replica's queue; return how many."""
        raise NotImplementedError(f"the {self.name!r} transport does not keep dead letters")

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Release connections; messages taken but not settled are given back. Idempotent."""
        if not self._closed:
            self._closed = True
            self._stopping.set()
            self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed(f"the {self.name!r} transport is closed")

    @abc.abstractmethod
    def _close(self) -> None:
        """Close connections (called once)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_api_version(cls: type[BaseTransport], where: str | None = None) -> None:
    """Raise `TransportLoadError` unless `cls` declares the contract version this core speaks."""
    where = where or f"{cls.__module__}.{cls.__qualname__}"
    declared = getattr(cls, "api_version", None)
    if isinstance(declared, bool) or not isinstance(declared, int):
        raise TransportLoadError(
            f"{where} does not declare `api_version`: add `api_version = {TRANSPORT_API_VERSION}` "
            "to the class (the transport API version it was written and tested against)."
        )


def _defines(cls: type, attr: str) -> bool:
    """True if `cls` or a base below `BaseTransport` defines `attr` itself."""
    for klass in cls.__mro__:
        if klass is BaseTransport:
            return False
        if attr in klass.__dict__:
            return True
    return False


def _legacy_consume(self: BaseTransport, handler: Handler, **kwargs: Any) -> None:
    raise NotImplementedError(f"{type(self).__qualname__} overrides consume() itself")
