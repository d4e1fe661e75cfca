"""The message exchanged between master and replica services."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from cqrs_core.constants import DEFAULT_MESSAGE_TTL, SignalType
from cqrs_core.exceptions import MalformedMessage

_REQUIRED_KEYS = ("signal_type", "cqrs_id", "instance_data")


class _Default(enum.Enum):
    TTL = "default"


_default_ttl: Callable[[], float | None] | None = None


def set_default_ttl(provider: Callable[[], float | None] | None) -> None:
    """Make `from_message` ask `provider` for the TTL of messages without `expires`.

    cqrs-core cannot read framework settings; dj_cqrs registers its `CQRS_MESSAGE_TTL` setting
    here, as django-cqrs 3.x's `from_message` used it. None restores `DEFAULT_MESSAGE_TTL`.
    """
    global _default_ttl
    _default_ttl = provider


CorrelationProvider = Callable[[SignalType, str, Any, "str | None"], Any]

_default_correlation: CorrelationProvider | None = None


def set_default_correlation(provider: CorrelationProvider | None) -> None:
    """Give payloads built without a `correlation_id` the one `provider` returns.

    django-cqrs 3.x's payload asked the configured correlation function when none was given,
    and services' tests build payloads by hand expecting that; dj_cqrs registers it here.
    `provider(signal_type, cqrs_id, instance_pk, queue)` must not raise. None turns it off.
    """
    global _default_correlation
    _default_correlation = provider


@dataclasses.dataclass
class TransportPayload:
    """One CQRS event. Field names, order and wire keys are those of `dj_cqrs`.

    Its fields are read-only except `retries`, which django-cqrs 3.x code (test doubles,
    custom transports) sets in place: `payload.retries = n`; use `dataclasses.replace` for the
    others. Not slotted, because 3.x transport code also tags payloads with attributes of its
    own (`payload.is_requeue = True`).

    Args:
        signal_type: Type of the change (`SignalType`).
        cqrs_id: The CQRS_ID of the model.
        instance_data: Serialized instance (SAVE/SYNC) or `{"id", "cqrs_revision", ...}` (DELETE).
        instance_pk: Primary key of the instance.
        queue: Replica service a SYNC is aimed at; None means every replica.
        previous_data: Previous values of tracked fields.
        correlation_id: Correlation id of the process that produced the event.
        expires: When the event stops being worth applying; None means never.
        retries: How many times a replica has already retried it.
        meta: Free-form metadata from the master's `meta_function`.
        headers: Context headers that travel beside the body, never in it (W3C `traceparent`
            and `tracestate`): `BaseTransport.outgoing` copies them onto the broker message and
            `dispatch` gives the received ones back (`cqrs_core.wire.carried_headers`). Not
            compared and not in `repr`, so payloads equal as events stay equal.
    """

    signal_type: SignalType
    cqrs_id: str
    instance_data: Mapping[str, Any]
    instance_pk: Any
    queue: str | None = None
    previous_data: Mapping[str, Any] | None = None
    correlation_id: Any = None
    expires: datetime | None = None
    retries: int = 0
    meta: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.signal_type, SignalType):
            object.__setattr__(self, "signal_type", SignalType(self.signal_type))
        if self.correlation_id is None and _default_correlation is not None:
            correlation = _default_correlation(
                self.signal_type, self.cqrs_id, self.instance_pk, self.queue
            )
            object.__setattr__(self, "correlation_id", correlation)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__ and name in _FIELDS:  # not yet set while being built
            if name != "retries":
                raise dataclasses.FrozenInstanceError(
                    f"cannot assign to field {name!r}: a TransportPayload is immutable except "
                    "for `retries`; build a changed copy with dataclasses.replace()"
                )
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"retries must be a non-negative integer, got {value!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _FIELDS:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    @property
    def pk(self) -> Any:
        """`instance_pk` under its django-cqrs 3.x name."""
        return self.instance_pk

    @classmethod
    def from_message(
        cls,
        dct: Mapping[str, Any],
        *,
        queue: str | None = None,
        default_ttl: float | None | _Default = _Default.TTL,
        now: datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> TransportPayload:
        """Build a payload from a decoded message body, checking every field.

        Args:
            dct: The decoded JSON object.
            queue: Target queue learnt from the transport (routing key, header); wins over a
                `queue` key in the body.
            default_ttl: Seconds until expiry for legacy messages without an `expires` key;
                None means they never expire. By default, the provider given to
                `set_default_ttl` (dj_cqrs: `CQRS['master']['CQRS_MESSAGE_TTL']`), else
                `DEFAULT_MESSAGE_TTL`.
            now: Injectable clock for tests.
            headers: Context headers received beside the body (`headers`).

        Raises:
            MalformedMessage: the body is not a CQRS payload; the message says which key is wrong.
        """
        if not isinstance(dct, Mapping):
            raise MalformedMessage(f"body must be a JSON object, got {type(dct).__name__}")
        missing = [key for key in _REQUIRED_KEYS if key not in dct]
        if missing:
            raise MalformedMessage(f"missing key(s): {', '.join(missing)}")
        try:
            signal_type = SignalType(dct["signal_type"])
        except (ValueError, TypeError):
            raise MalformedMessage(
                f"signal_type must be one of SAVE, DELETE, SYNC, got {dct['signal_type']!r}"
            ) from None
        cqrs_id = dct["cqrs_id"]
        if not isinstance(cqrs_id, str) or not cqrs_id:
            raise MalformedMessage(f"cqrs_id must be a non-empty string, got {cqrs_id!r}")
        instance_data = dct["instance_data"]
        if not isinstance(instance_data, dict):
            raise MalformedMessage("instance_data must be a JSON object")
        previous_data = dct.get("previous_data")
        if previous_data is not None and not isinstance(previous_data, dict):
            raise MalformedMessage("previous_data must be a JSON object or null")
        retries = dct.get("retries", 0)
        if retries is None:
            retries = 0
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise MalformedMessage(f"retries must be a non-negative integer, got {retries!r}")
        if default_ttl is _Default.TTL:
            default_ttl = _default_ttl() if _default_ttl is not None else DEFAULT_MESSAGE_TTL
        if "expires" in dct:
            expires = _parse_expires(dct["expires"])
        elif default_ttl is None:
            expires = None
        else:
            expires = (now or datetime.now(timezone.utc)) + timedelta(seconds=default_ttl)
        body_queue = dct.get("queue")
        if body_queue is not None and not isinstance(body_queue, str):
            raise MalformedMessage(f"queue must be a string or null, got {body_queue!r}")
        fields = {  # every field, in declaration order
            "signal_type": signal_type,
            "cqrs_id": cqrs_id,
            "instance_data": instance_data,
            "instance_pk": dct.get("instance_pk", instance_data.get("id")),
            "queue": queue or body_queue,
            "previous_data": previous_data,
            "correlation_id": dct.get("correlation_id"),
            "expires": expires,
            "retries": retries,
            "meta": dct.get("meta"),
            "headers": dict(headers) if headers else {},
        }
        if cls is not TransportPayload:  # a subclass may build itself its own way
            return cls(**fields)
        # What `__init__` does, without its eleven guarded `__setattr__` calls (one payload
        # per received message: they cost more than the rest of the decoding).
        payload = object.__new__(cls)
        payload.__dict__.update(fields)
        payload.__post_init__()
        return payload

    def to_dict(self) -> dict[str, Any]:
        """Return the message body as a dict, keys in the wire order (no `queue`: see §2)."""
        return {
            "signal_type": self.signal_type.value,
            "cqrs_id": self.cqrs_id,
            "instance_data": self.instance_data,
            "previous_data": self.previous_data,
            "instance_pk": self.instance_pk,
            "correlation_id": self.correlation_id,
            "retries": self.retries,
            "expires": format_expires(self.expires),
            "meta": self.meta,
        }

    def is_expired(self, *, now: datetime | None = None) -> bool:
        """Return True once `expires` has passed.

        Args:
            now: Injectable clock for tests; defaults to the current UTC time.
        """
        return self.expires is not None and (now or datetime.now(timezone.utc)) >= self.expires

    def retried(self) -> TransportPayload:
        """The same event with `retries` one higher, as a replica republishes it."""
        return dataclasses.replace(self, retries=self.retries + 1)


_FIELDS = frozenset(field.name for field in dataclasses.fields(TransportPayload))


def format_expires(expires: datetime | None) -> str | None:
    """Wire form of `expires`: ISO 8601, whole seconds, `+00:00` offset (never `Z`)."""
    if expires is None:
        return None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    return expires.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def expires_in(ttl: float | None, *, now: datetime | None = None) -> datetime | None:
    """The expiry of a message published now with a TTL in seconds (None: never)."""
    if ttl is None:
        return None
    return (now or datetime.now(timezone.utc)).replace(microsecond=0) + timedelta(seconds=ttl)


def _parse_expires(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedMessage(f"expires must be an ISO 8601 string or null, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        parsed.astimezone(timezone.utc)  # must be representable in UTC to be sent again
    except (ValueError, OverflowError):
        raise MalformedMessage(f"expires is not a usable ISO 8601 datetime: {value!r}") from None
    return parsed
