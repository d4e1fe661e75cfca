"""What flows between a transport and the handler that applies events.

A transport receives raw messages (`Inbound`), lets `BaseTransport.dispatch` decode them and ask
the handler, and then settles each message by its `Outcome`: ack it, retry it later, dead-letter
it, or give it back untouched.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cqrs_core.payload import TransportPayload


class OutcomeKind(str, enum.Enum):
    """What a transport must do with a message once the handler has seen it."""

    APPLIED = "applied"
    """Done: acknowledge it."""
    SKIPPED = "skipped"
    """Not for this consumer and nobody else's either (a SYNC aimed at another queue): ack."""
    RETRY = "retry"
    """Failed for now: republish it with `retries + 1` after the delay, then ack the original."""
    DEAD = "dead"
    """Give up: move it to the dead letters with the reason, then ack the original."""
    RELEASE = "release"
    """Not for this consumer (filtered out): give it back untouched for another consumer."""


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """The handler's verdict on one message.

    Build one with `Outcome.applied()`, `Outcome.retry(delay)` or `Outcome.dead(reason)`.
    """

    kind: OutcomeKind
    delay: float | None = None
    """RETRY only: seconds to wait; None lets the transport's retry policy decide."""
    reason: str = ""
    """Why it failed; travels with retries and dead letters."""

    @classmethod
    def applied(cls) -> Outcome:
        return _APPLIED

    @classmethod
    def skipped(cls, reason: str = "") -> Outcome:
        return cls(OutcomeKind.SKIPPED, reason=reason)

    @classmethod
    def retry(cls, delay: float | None = None, reason: str = "") -> Outcome:
        return cls(OutcomeKind.RETRY, delay=delay, reason=reason)

    @classmethod
    def dead(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.DEAD, reason=reason)

    @classmethod
    def release(cls) -> Outcome:
        return _RELEASE

    @property
    def acks(self) -> bool:
        """True when the original message can be acknowledged right away."""
        return self.kind in (OutcomeKind.APPLIED, OutcomeKind.SKIPPED)


_APPLIED = Outcome(OutcomeKind.APPLIED)
_RELEASE = Outcome(OutcomeKind.RELEASE)

Handler = Callable[[Sequence[TransportPayload]], Sequence[Outcome]]
"""Applies a batch of payloads and returns one `Outcome` per payload, in the same order.

Raising an exception means every payload of the batch failed (they are retried by policy).
"""

_DECIDES_UNLISTED = "decides_unlisted_ids"


def decides_unlisted_ids(handler: Handler) -> Handler:
    """Mark `handler` as the one to decide messages whose CQRS_ID is not being consumed.

    By default `BaseTransport.dispatch` gives such messages back (RELEASE) without showing them
    to the handler: another consumer of the queue may take them. A handler that knows better
    (the Django consumer knows which models the whole service has, so it can dead-letter a
    message for a removed model instead of letting it circulate) is marked with this.
    """
    setattr(handler, _DECIDES_UNLISTED, True)
    return handler


def handler_decides_unlisted_ids(handler: Handler) -> bool:
    """Whether `handler` was marked with `decides_unlisted_ids`."""
    return bool(getattr(handler, _DECIDES_UNLISTED, False))


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """One encoded message on its way to the broker."""

    body: bytes
    cqrs_id: str
    queue: str | None = None
    """Target queue of a directed message (SYNC for one service, retry, dead letter)."""
    payload: TransportPayload | None = None
    headers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Copy these onto the broker's message (names and the reason rule: `cqrs_core.wire`)."""
    delay: float | None = None
    """A retry only: seconds it must wait before it is applied again."""
    due: float | None = None
    """A retry only: epoch seconds before which it must not be applied (`wire.due_at`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Inbound:
    """One message as the transport received it."""

    body: bytes
    queue: str | None = None
    """Target queue learnt from the envelope (routing key, header), if directed."""
    token: Any = None
    """The transport's own handle for settling it (delivery tag, offset, ...)."""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Context headers received with it (`cqrs_core.wire.carried_headers` of the broker's
    headers: W3C `traceparent`, `tracestate`); `dispatch` hands them on as
    `TransportPayload.headers`. Empty from transports that do not read them."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settled:
    """A message with its decoded payload (None if malformed) and its outcome."""

    message: Inbound
    payload: TransportPayload | None
    outcome: Outcome


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered message as stored by the transport."""

    body: bytes
    reason: str = ""
    payload: TransportPayload | None = None
    """The decoded payload, or None when the body itself was malformed."""


def per_message(apply: Callable[[TransportPayload], object]) -> Handler:
    """Adapt a one-message function to a batch handler: a truthy result is APPLIED.

    A falsy result or an exception retries that message alone, as django-cqrs handlers did.
    """

    def handler(payloads: Sequence[TransportPayload]) -> list[Outcome]:
        outcomes = []
        for payload in payloads:
            try:
                ok = apply(payload)
            except Exception as exc:  # noqa: BLE001 (one bad message must not fail its batch)
                outcomes.append(Outcome.retry(reason=f"{type(exc).__name__}: {exc}"))
                continue
            outcomes.append(Outcome.applied() if ok else Outcome.retry(reason="handler failed"))
        return outcomes

    return handler
