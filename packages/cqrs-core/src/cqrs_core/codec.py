"""The JSON body on the wire, byte-compatible with django-cqrs 3.x.

Bodies are compact ASCII JSON with `/` escaped as `\\/` (what upstream's encoder produces), so
old and new services can be mixed. Values JSON has no type for are converted the way a Django
replica field reads them back: datetimes with `str()`, UUIDs as strings, durations as ISO 8601,
bytes as base64. A Decimal goes out as a JSON number when a float holds it exactly (as upstream
did), otherwise as a string, so precision is never lost.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import uuid
from collections.abc import Mapping
from typing import Any

from cqrs_core.constants import DEFAULT_MESSAGE_TTL
from cqrs_core.exceptions import MalformedMessage
from cqrs_core.payload import TransportPayload

__all__ = ["decode", "dumps", "encode", "loads"]


def _duration_iso(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    fraction = f".{value.microseconds:06d}" if value.microseconds else ""
    return f"{sign}P{value.days}DT{hours:02d}H{minutes:02d}M{seconds:02d}{fraction}S"


def _decimal(value: decimal.Decimal) -> float | str:
    if value.is_finite():
        as_float = float(value)
        if decimal.Decimal(repr(as_float)) == value:
            return as_float
    return str(value)


class _WireEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, dt.datetime):
            return str(o)
        if isinstance(o, (dt.date, dt.time)):
            return o.isoformat()
        if isinstance(o, dt.timedelta):
            return _duration_iso(o)
        if isinstance(o, decimal.Decimal):
            return _decimal(o)
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, enum.Enum):
            return o.value
        if isinstance(o, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(o)).decode("ascii")
        if isinstance(o, (set, frozenset, tuple)):
            return list(o)
        if isinstance(o, Mapping):
            return dict(o)
        if hasattr(o, "__html__") or type(o).__name__ == "__proxy__":  # lazy translation strings
            return str(o)
        raise TypeError(
            f"{type(o).__name__} value {o!r} is not JSON serializable; convert it in the model's "
            "CQRS_SERIALIZER or to_cqrs_dict()"
        )


_ENCODER = _WireEncoder(ensure_ascii=True, separators=(",", ":"))


def dumps(obj: Any) -> str:
    """Serialize `obj` exactly as django-cqrs 3.x does (compact, ASCII, `/` escaped)."""
    # With ensure_ascii, "/" can only occur inside strings, so this replace is safe.
    return _ENCODER.encode(obj).replace("/", "\\/")


def loads(body: bytes | str) -> Any:
    """Parse a JSON body; raise `MalformedMessage` when it is not JSON."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(f"body is not valid JSON: {exc}") from None
    except RecursionError:  # nested deeper than the interpreter can parse
        raise MalformedMessage("body is JSON nested too deeply to parse") from None


def encode(payload: TransportPayload) -> bytes:
    """The message body of `payload`, as bytes."""
    return dumps(payload.to_dict()).encode("ascii")


def decode(
    body: bytes | str,
    *,
    queue: str | None = None,
    default_ttl: float | None = DEFAULT_MESSAGE_TTL,
    headers: Mapping[str, str] | None = None,
) -> TransportPayload:
    """Parse and validate a message body; raise `MalformedMessage` with the reason if it is bad.

    `headers`: the context headers received with it (`TransportPayload.headers`).
    """
    return TransportPayload.from_message(
        loads(body), queue=queue, default_ttl=default_ttl, headers=headers
    )


def revive(body: bytes) -> tuple[bytes, TransportPayload | None]:
    """A dead letter's body made ready to be consumed again: its retry count back to 0.

    A body that still does not decode is returned as it is, with None for the payload (the
    consumer dead-letters it again, with the reason).
    """
    try:
        payload = decode(body, default_ttl=None)
    except MalformedMessage:
        return body, None
    payload = dataclasses.replace(payload, retries=0)
    return encode(payload), payload
