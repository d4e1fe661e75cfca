"""What travels beside the body: header names, the reason rule and retry bookkeeping.

These rules are the same for every transport, so they live here with the codec (`codec`) and the
routing keys (`routing`): a transport, in this repository or a third party's, writes a retry or a
dead letter by calling `BaseTransport.retry_message` / `dead_letter_message` and copying
`Outgoing.headers` onto the broker's message, never by spelling the header names itself.

The reason rule: a broker header carries `header_reason(reason)`, a single line of at most
`REASON_MAX` characters (line breaks become a visible `\\n`), because some brokers' headers
(HTTP-style ones such as NATS, SQS attribute limits) cannot carry line breaks or long values.
Where the broker can store more (an in-process store, a stream field), the transport may keep
the full reason instead; `DeadLetter.reason` is whichever it kept. `x-cqrs-dead-reason` must
travel with every dead letter (it is what `dead_letters()` reports and operators read);
`x-cqrs-retry-reason` is informational and a transport may drop it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

DEAD_REASON_HEADER = "x-cqrs-dead-reason"
"""Why a message was dead-lettered; required on every dead letter."""
RETRY_REASON_HEADER = "x-cqrs-retry-reason"
"""Why the previous attempt failed; informational."""
ROUTING_KEY_HEADER = "x-cqrs-routing-key"
"""Original routing key of a message moved to a queue by name (released, delayed)."""
DEAD_AT_HEADER = "x-cqrs-dead-at"
"""Epoch seconds a dead letter was stored, for brokers that do not keep a timestamp."""

TRACEPARENT_HEADER = "traceparent"
"""W3C trace context of the event's creation (`dj_cqrs.observability.tracing`)."""
TRACESTATE_HEADER = "tracestate"
"""W3C vendor trace state, sent only when the context has one."""

REASON_MAX = 1000
"""Longest reason a header carries, in characters."""

_LINE_BREAKS = str.maketrans({"\r": "", "\n": "\\n"})


def header_reason(reason: str) -> str:
    """`reason` as a header carries it: one line, at most `REASON_MAX` characters."""
    if "\n" in reason or "\r" in reason:
        reason = reason.replace("\r\n", "\n").replace("\r", "\n").translate(_LINE_BREAKS)
    return reason[:REASON_MAX]


def read_reason(headers: Mapping[str, Any] | None, name: str = DEAD_REASON_HEADER) -> str:
    """The reason stored in `headers` (bytes or text), or `""`."""
    value = (headers or {}).get(name, "")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def carried_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The headers of a received message that travel on with its payload.

    Every text (or UTF-8 bytes) header whose name does not start with `x-`: those belong to the
    transports and brokers (`x-cqrs-*`, RabbitMQ's `x-death`) and are never handed on. Today
    that is the W3C trace context (`traceparent`, `tracestate`); a 3.x master sends none.
    """
    carried: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or name.lower().startswith("x-"):
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            carried[name] = value
    return carried


def due_at(delay: float | None, *, now: float | None = None) -> float:
    """Epoch seconds at which a retry `delay` seconds from `now` (default: now) is due."""
    return (time.time() if now is None else now) + max(delay or 0.0, 0.0)


__all__ = [
    "DEAD_AT_HEADER",
    "DEAD_REASON_HEADER",
    "REASON_MAX",
    "RETRY_REASON_HEADER",
    "ROUTING_KEY_HEADER",
    "TRACEPARENT_HEADER",
    "TRACESTATE_HEADER",
    "carried_headers",
    "due_at",
    "header_reason",
    "read_reason",
]
