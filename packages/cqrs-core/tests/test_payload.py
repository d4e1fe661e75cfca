"""TransportPayload: parsing received bodies, expiry, retries, and round trips through the codec."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest

from cqrs_core import codec
from cqrs_core.constants import DEFAULT_MESSAGE_TTL, SignalType
from cqrs_core.exceptions import MalformedMessage
from cqrs_core.payload import TransportPayload

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)


def body(**overrides: Any) -> dict[str, Any]:
    dct: dict[str, Any] = {
        "signal_type": "SAVE",
        "cqrs_id": "product",
        "instance_data": {"id": 5, "cqrs_revision": 2, "name": "x"},
        "previous_data": {"name": "old"},
        "instance_pk": 5,
        "correlation_id": "corr-1",
        "retries": 3,
        "expires": "2026-11-28T08:00:00+00:00",
        "meta": {"service": "master"},
    }
    dct.update(overrides)
    return {k: v for k, v in dct.items() if v is not _DROP}


_DROP = object()


def test_from_message_reads_every_field() -> None:
    payload = TransportPayload.from_message(body(queue="billing"))
    assert payload == TransportPayload(
        signal_type=SignalType.SAVE,
        cqrs_id="product",
        instance_data={"id": 5, "cqrs_revision": 2, "name": "x"},
        instance_pk=5,
        queue="billing",
        previous_data={"name": "old"},
        correlation_id="corr-1",
        expires=dt.datetime(2026, 11, 28, 8, tzinfo=UTC),
        retries=3,
        meta={"service": "master"},
    )
    assert payload.signal_type is SignalType.SAVE


def test_queue_argument_wins_over_body() -> None:
    assert TransportPayload.from_message(body(), queue="a").queue == "a"
    assert TransportPayload.from_message(body(queue="b"), queue="a").queue == "a"
    assert TransportPayload.from_message(body(queue="b")).queue == "b"
    assert TransportPayload.from_message(body()).queue is None


def test_minimal_legacy_message_gets_defaults() -> None:
    """Only the three required keys: pk from instance_data, expiry from the default TTL."""
    minimal = {"signal_type": "DELETE", "cqrs_id": "product", "instance_data": {"id": 9}}
    payload = TransportPayload.from_message(minimal, now=NOW)
    assert payload.instance_pk == 9
    assert (payload.previous_data, payload.correlation_id, payload.meta) == (None, None, None)
    assert payload.retries == 0
    assert payload.expires == NOW + dt.timedelta(seconds=DEFAULT_MESSAGE_TTL)


def test_missing_expires_uses_given_ttl_or_never() -> None:
    legacy = body(expires=_DROP)
    assert TransportPayload.from_message(legacy, now=NOW, default_ttl=60).expires == (
        NOW + dt.timedelta(seconds=60)
    )
    never = TransportPayload.from_message(legacy, now=NOW, default_ttl=None)
    assert never.expires is None
    assert not never.is_expired(now=dt.datetime(9999, 1, 1, tzinfo=UTC))


def test_null_expires_never_expires_whatever_the_ttl() -> None:
    assert TransportPayload.from_message(body(expires=None), default_ttl=1).expires is None


def test_missing_expires_uses_the_real_clock_by_default() -> None:
    before = dt.datetime.now(UTC)
    expires = TransportPayload.from_message(body(expires=_DROP), default_ttl=10).expires
    after = dt.datetime.now(UTC)
    assert expires is not None
    assert before + dt.timedelta(seconds=10) <= expires <= after + dt.timedelta(seconds=10)


def test_unknown_keys_are_ignored() -> None:
    payload = TransportPayload.from_message(body(future_field={"x": 1}, another=[1]))
    assert payload.cqrs_id == "product"
    assert "future_field" not in codec.encode(payload).decode()


@pytest.mark.parametrize(
    ("expires", "expected"),
    [
        ("2026-11-28T08:00:00Z", dt.datetime(2026, 11, 28, 8, tzinfo=UTC)),
        ("2026-11-28T08:00:00z", dt.datetime(2026, 11, 28, 8, tzinfo=UTC)),
        ("2026-11-28T09:00:00+01:00", dt.datetime(2026, 11, 28, 8, tzinfo=UTC)),
        (
            "2026-11-28T08:00:00.500000+00:00",
            dt.datetime(2026, 11, 28, 8, 0, 0, 500000, tzinfo=UTC),
        ),
        ("2026-11-28T08:00:00", dt.datetime(2026, 11, 28, 8, tzinfo=UTC)),  # naive means UTC
        (" 2026-11-28 08:00:00+00:00 ", dt.datetime(2026, 11, 28, 8, tzinfo=UTC)),
    ],
)
def test_expires_formats_accepted(expires: str, expected: dt.datetime) -> None:
    parsed = TransportPayload.from_message(body(expires=expires)).expires
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("dct", "words"),
    [
        ([1, 2], "JSON object, got list"),
        ("SAVE", "JSON object, got str"),
        (None, "JSON object, got NoneType"),
        (body(signal_type=_DROP), "missing key(s): signal_type"),
        (body(cqrs_id=_DROP, instance_data=_DROP), "missing key(s): cqrs_id, instance_data"),
        (body(signal_type="UPSERT"), "signal_type must be one of SAVE, DELETE, SYNC, got 'UPSERT'"),
        (body(signal_type="save"), "signal_type"),
        (body(signal_type=None), "signal_type"),
        (body(signal_type=["SAVE"]), "signal_type"),
        (body(cqrs_id=5), "cqrs_id must be a non-empty string, got 5"),
        (body(cqrs_id=""), "cqrs_id"),
        (body(cqrs_id=None), "cqrs_id"),
        (body(instance_data=[1]), "instance_data must be a JSON object"),
        (body(instance_data=None), "instance_data"),
        (body(instance_data="{}"), "instance_data"),
        (body(previous_data=[]), "previous_data must be a JSON object or null"),
        (body(retries=-1), "retries must be a non-negative integer, got -1"),
        (body(retries=True), "retries"),
        (body(retries="1"), "retries"),
        (body(retries=1.0), "retries"),
        (body(expires="tomorrow"), "expires is not a usable ISO 8601 datetime: 'tomorrow'"),
        (
            body(expires="9999-12-31T23:00:00-05:00"),
            "expires is not a usable",
        ),  # past year 9999 in UTC
        (body(expires="2026-13-01T00:00:00+00:00"), "expires"),
        (body(expires=1764230400), "expires must be an ISO 8601 string or null"),
        (body(queue=1), "queue must be a string or null"),
    ],
)
def test_malformed_messages_name_the_key(dct: Any, words: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        TransportPayload.from_message(dct)
    assert words in str(info.value)


def test_null_retries_counts_as_zero() -> None:
    assert TransportPayload.from_message(body(retries=None)).retries == 0


def test_decode_reports_malformed_bodies() -> None:
    with pytest.raises(MalformedMessage, match="not valid JSON"):
        codec.decode(b"{nope")
    with pytest.raises(MalformedMessage, match="cqrs_id"):
        codec.decode(b'{"signal_type":"SAVE","cqrs_id":1,"instance_data":{}}')


def test_is_expired_with_injected_clock() -> None:
    payload = TransportPayload.from_message(body())
    expires = dt.datetime(2026, 11, 28, 8, tzinfo=UTC)
    assert not payload.is_expired(now=expires - dt.timedelta(microseconds=1))
    assert payload.is_expired(now=expires)
    assert payload.is_expired(now=expires + dt.timedelta(seconds=1))
    # An aware clock in another zone compares by instant.
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert not payload.is_expired(now=dt.datetime(2026, 11, 28, 9, 59, tzinfo=plus_two))
    assert payload.is_expired(now=dt.datetime(2026, 11, 28, 10, 1, tzinfo=plus_two))


def test_is_expired_with_real_clock() -> None:
    past = dt.datetime.now(UTC) - dt.timedelta(seconds=5)
    future = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    make = TransportPayload.from_message
    assert make(body(expires=past.isoformat())).is_expired()
    assert not make(body(expires=future.isoformat())).is_expired()


def test_retried_increments_and_keeps_the_rest() -> None:
    payload = TransportPayload.from_message(body())
    again = payload.retried()
    assert again.retries == payload.retries + 1 == 4
    assert dataclasses.replace(again, retries=payload.retries) == payload
    assert payload.retries == 3  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        payload.cqrs_id = "other"  # type: ignore[misc]


def test_signal_type_given_as_string_is_converted() -> None:
    payload = TransportPayload(signal_type="SYNC", cqrs_id="x", instance_data={}, instance_pk=1)  # type: ignore[arg-type]
    assert payload.signal_type is SignalType.SYNC
    assert str(SignalType.SYNC) == "SYNC"
    with pytest.raises(ValueError):
        TransportPayload(signal_type="NOPE", cqrs_id="x", instance_data={}, instance_pk=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("signal_type", list(SignalType))
@pytest.mark.parametrize(
    ("pk", "wire_pk"),
    [
        (7, 7),
        ("abc", "abc"),
        (uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"), "0f8fad5b-d9cb-469f-a165-70867728950e"),
        (dt.date(2026, 12, 24), "2026-12-24"),
    ],
)
def test_round_trip_through_codec(signal_type: SignalType, pk: Any, wire_pk: Any) -> None:
    """What a master sends is what a replica decodes (pks in their JSON form)."""
    expires = dt.datetime(2026, 11, 28, 8, 47, 17, tzinfo=UTC)
    sent = TransportPayload(
        signal_type=signal_type,
        cqrs_id="product",
        instance_data={"id": pk, "cqrs_revision": 1},
        instance_pk=pk,
        previous_data={"name": "a/b"} if signal_type is SignalType.SAVE else None,
        correlation_id="c",
        expires=expires,
        retries=2,
        meta={"m": [1, None]},
    )
    got = codec.decode(codec.encode(sent), queue="replica")
    assert got.signal_type is signal_type
    assert got.instance_pk == wire_pk
    assert got.instance_data == {"id": wire_pk, "cqrs_revision": 1}
    assert (got.previous_data, got.correlation_id, got.meta) == (
        sent.previous_data,
        "c",
        {"m": [1, None]},
    )
    assert (got.retries, got.expires, got.queue) == (2, expires, "replica")
    assert codec.encode(got) == codec.encode(sent)


def test_to_dict_has_no_queue_key() -> None:
    payload = TransportPayload.from_message(body(), queue="billing")
    assert "queue" not in payload.to_dict()
    assert payload.to_dict()["signal_type"] == "SAVE"
