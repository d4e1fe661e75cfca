"""Wire compatibility with upstream django-cqrs 3.1.0, checked against captured bodies.

The golden file is a copy of the captures described in the reference README (25 real messages
published by upstream over pika, kombu/AMQP and kombu/Redis), so this package's tests need
nothing outside it.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from cqrs_core import codec, routing
from cqrs_core.constants import SignalType
from cqrs_core.exceptions import MalformedMessage
from cqrs_core.payload import TransportPayload, expires_in, format_expires

GOLDEN = Path(__file__).parent / "golden" / "upstream-3.1.0.jsonl"
RECORDS = [json.loads(line) for line in GOLDEN.read_text("utf-8").splitlines() if line.strip()]
WIRE_KEYS = [
    "signal_type",
    "cqrs_id",
    "instance_data",
    "previous_data",
    "instance_pk",
    "correlation_id",
    "retries",
    "expires",
    "meta",
]
PLUS_ONE = dt.timezone(dt.timedelta(hours=1))


def body_of(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["body_b64"])


def record(case: str, transport: str = "pika") -> dict[str, Any]:
    return next(r for r in RECORDS if r["case"] == case and r["transport"] == transport)


def test_golden_file_is_complete() -> None:
    assert len(RECORDS) == 25
    assert {r["transport"] for r in RECORDS} == {"pika", "kombu-amqp", "kombu-redis"}
    for r in RECORDS:
        assert body_of(r) == r["body"].encode("ascii")


@pytest.mark.parametrize(
    "captured", RECORDS, ids=[f"{r['transport']}-{r['case']}-{i}" for i, r in enumerate(RECORDS)]
)
def test_decode_then_encode_gives_the_captured_bytes(captured: dict[str, Any]) -> None:
    """Every upstream body survives decode + encode byte for byte (floats included)."""
    body = body_of(captured)
    payload = codec.decode(body, default_ttl=None)
    again = codec.encode(payload)
    if again != body:
        # Upstream keeps the tracked fields in a set, so previous_data's key order may differ
        # between processes; everything else must match exactly.
        ours, theirs = json.loads(again), json.loads(body)
        assert ours.pop("previous_data") == theirs.pop("previous_data")
        assert codec.dumps(ours).encode() == codec.dumps(theirs).encode()
    assert list(json.loads(again)) == WIRE_KEYS
    # And the structure agrees with Python's own reading of the captured body.
    assert json.loads(again) == json.loads(body)


@pytest.mark.parametrize("captured", RECORDS, ids=lambda r: f"{r['transport']}-{r['case']}")
def test_decoded_fields_have_wire_types(captured: dict[str, Any]) -> None:
    raw = json.loads(body_of(captured))
    payload = codec.decode(body_of(captured), default_ttl=None)
    assert payload.signal_type is SignalType(raw["signal_type"])
    assert payload.cqrs_id == raw["cqrs_id"]
    assert payload.instance_pk == raw["instance_pk"]
    assert payload.retries == raw["retries"]
    assert payload.expires is not None and payload.expires.utcoffset() == dt.timedelta(0)
    assert format_expires(payload.expires) == raw["expires"]
    assert payload.queue is None  # the wire never carries it


def test_replica_requeue_is_the_original_with_retries_plus_one() -> None:
    """Our `retried()` reproduces upstream's requeue bytes from the original message."""
    original = codec.decode(body_of(record("failing_original_save")), default_ttl=None)
    requeue = body_of(record("replica_requeue"))
    assert codec.encode(original.retried()) == requeue
    # Upstream dead-letters the requeued bytes as they are (retries not incremented again).
    assert body_of(record("replica_dead_letter")) == requeue
    assert body_of(record("replica_dead_letter_from_dlq")) == requeue


def test_routing_keys_match_captures() -> None:
    for r in RECORDS:
        key = r["routing_key"]
        payload = codec.decode(body_of(r), default_ttl=None)
        target = routing.target_queue(key, payload.cqrs_id)
        if r["case"] in ("sync_directed", "replica_requeue"):
            assert target == "golden_replica"
        elif r["case"].startswith("replica_dead_letter"):
            assert target == "dead_letter_golden_replica"
        else:
            assert target is None
        directed = codec.decode(body_of(r), queue=target, default_ttl=None)
        assert routing.routing_key(directed) == key


def test_uuid_pk_stays_a_string() -> None:
    payload = codec.decode(body_of(record("uuid_pk_save")), default_ttl=None)
    assert payload.instance_pk == "3b241101-e2bb-4255-8caf-4136c566a962"
    assert payload.instance_data["id"] == payload.instance_pk


# -- encoding Python values the way a master does ------------------------------------------


def master_payload(instance_data: dict[str, Any], **fields: Any) -> TransportPayload:
    values: dict[str, Any] = {
        "signal_type": SignalType.SAVE,
        "cqrs_id": "golden_product",
        "instance_data": instance_data,
        "instance_pk": instance_data.get("id"),
        "expires": dt.datetime(2026, 11, 28, 8, 47, 17, 985431, tzinfo=dt.timezone.utc),
    }
    values.update(fields)
    return TransportPayload(**values)


def test_master_values_encode_like_upstream() -> None:
    """The Product create of the capture, built from Python values, gives upstream's text."""
    data = {
        "id": 1,
        "cqrs_revision": 0,
        "cqrs_updated": dt.datetime(2026, 11, 27, 8, 47, 17, 985431, tzinfo=dt.timezone.utc),
        "name": 'Café "Grüße" a/b \\ ☃ 😀 <&>',
        "quantity": 7,
        "price": decimal.Decimal("1234.50"),
        "release_date": dt.date(2026, 12, 24),
        "published_at": dt.datetime(2026, 11, 27, 10, 30, 0, 123456, tzinfo=PLUS_ONE),
        "is_active": True,
        "note": None,
        "external_uuid": uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
    }
    payload = master_payload(
        data,
        previous_data={"release_date": None, "name": None},
        correlation_id="golden-corr:SAVE:golden_product:1:None",
        meta={"service": "golden-master", "model": "Product", "signal_type": "SAVE", "version": 1},
    )
    assert codec.encode(payload) == body_of(record("save_create"))


def test_exact_text_of_each_value_type() -> None:
    data = {
        "id": uuid.UUID("3B241101-E2BB-4255-8CAF-4136C566A962"),
        "dt_micro": dt.datetime(2026, 11, 27, 10, 30, 0, 123456, tzinfo=PLUS_ONE),
        "dt_whole": dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
        "date": dt.date(2026, 12, 24),
        "time": dt.time(9, 5, 7, 250000),
        "price": decimal.Decimal("1234.50"),
        "cents": decimal.Decimal("0.10"),
        "whole": decimal.Decimal(5),
        "big": decimal.Decimal("12345678901234567.89"),
        "duration": dt.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=5),
        "negative": -dt.timedelta(hours=1, seconds=30),
        "blob": b"\x00\xffhi",
        "text": 'é 😀 a/b \\ " <&>',
    }
    payload = master_payload(data, instance_pk=data["id"], signal_type=SignalType.SYNC)
    expected = (
        '{"signal_type":"SYNC","cqrs_id":"golden_product","instance_data":{'
        '"id":"3b241101-e2bb-4255-8caf-4136c566a962",'
        '"dt_micro":"2026-11-27 10:30:00.123456+01:00",'
        '"dt_whole":"2026-12-01 00:00:00+00:00",'
        '"date":"2026-12-24",'
        '"time":"09:05:07.250000",'
        '"price":1234.5,"cents":0.1,"whole":5.0,'
        '"big":"12345678901234567.89",'
        '"duration":"P1DT02H03M04.000005S",'
        '"negative":"-P0DT01H00M30S",'
        '"blob":"AP9oaQ==",'
        '"text":"\\u00e9 \\ud83d\\ude00 a\\/b \\\\ \\" <&>"},'
        '"previous_data":null,'
        '"instance_pk":"3b241101-e2bb-4255-8caf-4136c566a962",'
        '"correlation_id":null,"retries":0,'
        '"expires":"2026-11-28T08:47:17+00:00","meta":null}'
    )
    assert codec.encode(payload).decode("ascii") == expected


def test_big_decimal_keeps_its_precision_as_a_string() -> None:
    text = codec.dumps({"v": decimal.Decimal("12345678901234567.89")})
    assert text == '{"v":"12345678901234567.89"}'
    assert decimal.Decimal(json.loads(text)["v"]) == decimal.Decimal("12345678901234567.89")
    assert codec.dumps({"v": decimal.Decimal("NaN")}) == '{"v":"NaN"}'


def test_expires_is_utc_whole_seconds_with_offset() -> None:
    local = dt.datetime(2026, 11, 28, 9, 47, 17, 999999, tzinfo=PLUS_ONE)
    naive = dt.datetime(2026, 11, 28, 8, 47, 17, 500000)
    for value in (local, naive):
        text = codec.encode(master_payload({"id": 1}, expires=value)).decode()
        assert '"expires":"2026-11-28T08:47:17+00:00"' in text
    never = codec.encode(master_payload({"id": 1}, expires=None)).decode()
    assert '"expires":null' in never
    now = dt.datetime(2026, 11, 27, 8, 47, 17, 985431, tzinfo=dt.timezone.utc)
    assert format_expires(expires_in(86400, now=now)) == "2026-11-28T08:47:17+00:00"
    assert expires_in(None, now=now) is None


def test_body_is_compact_ascii_with_fixed_key_order() -> None:
    body = codec.encode(master_payload({"id": 1, "s": "ü" * 3}))
    assert body.isascii()
    assert b" " not in body and b"\n" not in body
    assert list(json.loads(body)) == WIRE_KEYS
    assert b"\\u00fc" in body  # lowercase hex escapes


@pytest.mark.parametrize(
    "text", ["a/b", "a\\/b", "\\", '"/"', "</script>", "\u2028", "😀/é", "\\u002f", ""]
)
def test_strings_round_trip(text: str) -> None:
    body = codec.dumps({"s": text})
    assert "/" not in body.replace("\\/", "")
    assert codec.loads(body) == {"s": text}
    assert json.loads(body) == {"s": text}


def test_unserializable_value_names_the_fix() -> None:
    with pytest.raises(TypeError, match="CQRS_SERIALIZER"):
        codec.dumps({"v": object()})


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"", "{"])
def test_loads_rejects_non_json(body: bytes | str) -> None:
    with pytest.raises(MalformedMessage, match="not valid JSON"):
        codec.loads(body)


def test_containers_and_enums_encode_as_json() -> None:
    assert codec.dumps({"t": (1, 2), "s": frozenset({3}), "e": SignalType.DELETE}) == (
        '{"t":[1,2],"s":[3],"e":"DELETE"}'
    )
