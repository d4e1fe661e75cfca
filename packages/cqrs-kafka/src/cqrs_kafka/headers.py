"""Kafka record headers: what travels beside the JSON body.

The body is the payload every transport sends; headers carry what Kafka needs to route and
schedule it without parsing the body: the signal type, the replica service a directed SYNC or a
retry is aimed at, the retry count, when a retry is due, and why a message failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cqrs_core import wire

SIGNAL = "x-cqrs-signal"
QUEUE = "x-cqrs-queue"
"""Replica service the message is for; other consumer groups SKIP it."""
RETRIES = "x-cqrs-retries"
DUE = "x-cqrs-due-ms"
"""Retry topic only: epoch milliseconds before which the message must not be applied."""
DEAD_REASON = wire.DEAD_REASON_HEADER
RETRY_REASON = wire.RETRY_REASON_HEADER

Headers = list[tuple[str, "bytes | str | None"]]
"""Record headers in the shape `Producer.produce` takes; `build` only writes bytes values."""


def build(extra: Mapping[str, Any] | None = None, **values: Any) -> Headers:
    """Encode header values as UTF-8 bytes, skipping None."""
    merged = {**(extra or {}), **{_name(k): v for k, v in values.items()}}
    return [
        (k, v if isinstance(v, bytes) else str(v).encode())
        for k, v in merged.items()
        if v is not None
    ]


def read(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Decode a record's headers (last value wins)."""
    found: dict[str, str] = {}
    for key, value in headers or ():
        if value is not None:
            found[key] = value.decode("utf-8", "replace")
    return found


def due_at(delay: float) -> int:
    """The DUE header value for a retry `delay` seconds from now."""
    return ms(wire.due_at(delay))


def ms(due: float) -> int:
    """The DUE header value for a retry due at epoch seconds `due` (`Outgoing.due`)."""
    return int(due * 1000)


def _name(keyword: str) -> str:
    return {"signal": SIGNAL, "queue": QUEUE, "retries": RETRIES, "due": DUE}[keyword]
