"""What goes on the broker matches upstream django-cqrs 3.1.0 (golden captures)."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import re
import time
from pathlib import Path

import amqp
import pytest
import redis

from cqrs_core import codec
from cqrs_core.messages import Outcome
from cqrs_core.testing.consuming import Recorder, consume_until
from cqrs_kombu import KombuTransport
from cqrs_kombu._testing import (
    AMQP_HOST,
    AMQP_PORT,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    cleanup_amqp,
    queue_family,
)

# Captures of upstream django-cqrs 3.1.0, kept with cqrs-core's tests (one copy in the repo).
GOLDEN = (
    Path(__file__).resolve().parents[2] / "cqrs-core" / "tests" / "golden" / "upstream-3.1.0.jsonl"
)
KOMBU_AMQP_PROPS = {
    "content_type": "text/plain",
    "content_encoding": "utf-8",
    "headers": {},
    "delivery_mode": 2,
    "priority": 0,
}


def golden(transport: str) -> list[dict]:
    records = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    return [r for r in records if r["transport"] == transport]


def _golden_payload(record: dict, queue: str | None, *, expires: datetime.datetime | None = None):
    payload = codec.decode(record["body"].encode(), default_ttl=None)
    if queue is not None:
        payload = dataclasses.replace(payload, queue=queue)
    if expires is not None:
        payload = dataclasses.replace(payload, expires=expires)
    return payload


def _fresh_golden(record: dict) -> tuple[datetime.datetime, bytes]:
    """An expiry a day ahead and the golden body carrying it instead of the captured one.

    The captured bodies expired a day after their capture; a consumer dead-letters them unseen.
    """
    expires = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    expires += datetime.timedelta(days=1)
    body = re.sub(
        r'"expires":"[^"]*"', f'"expires":"{expires.isoformat()}"', record["body"], count=1
    )
    return expires, body.encode("ascii")


@pytest.fixture
def amqp_setup(backend_options):
    options = backend_options("amqp")
    conn = amqp.Connection(f"{AMQP_HOST}:{AMQP_PORT}", userid="guest", password="guest")
    conn.connect()
    channel = conn.channel()
    spy = f"{options['queue']}_spy"
    yield options, channel, spy
    try:
        channel.queue_delete(spy)
    finally:
        conn.close()


def _drain(channel, queue: str, expect: int = 0, timeout: float = 30.0) -> list:
    """Every message in `queue`; waits (up to `timeout` s) until at least `expect` arrived."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        message = channel.basic_get(queue, no_ack=True)
        if message is None:
            if len(got) >= expect or time.monotonic() > deadline:
                return got
            time.sleep(0.05)
            continue
        props = dict(message.properties)
        if "application_headers" in props:  # py-amqp's name for the AMQP headers table
            props["headers"] = props.pop("application_headers")
        message.props = props
        if isinstance(message.body, str):  # py-amqp decodes bodies that name an encoding
            message.body = message.body.encode("utf-8")
        got.append(message)


def test_amqp_publish_matches_kombu_golden(amqp_setup):
    """Bodies, routing keys and properties equal upstream KombuTransport's over AMQP."""
    options, channel, spy = amqp_setup
    records = golden("kombu-amqp")
    assert len(records) == 7
    replica = "golden_replica"
    producer = KombuTransport({**options, "queue": None})
    # upstream's topology flags: redeclaring with them must not raise PRECONDITION_FAILED
    KombuTransport({**options, "queue": replica}).declare(["golden_product", "golden_ticket"])
    channel.exchange_declare(options["exchange"], "topic", durable=True, auto_delete=False)
    for name in (replica, f"dead_letter_{replica}"):
        channel.queue_declare(name, durable=True, auto_delete=False, arguments=None)
    channel.queue_declare(spy, durable=False, auto_delete=True)
    channel.queue_bind(spy, options["exchange"], "#")
    try:
        for record in records:
            directed = record["routing_key"].startswith("cqrs.")
            producer.produce(_golden_payload(record, replica if directed else None))
            (message,) = _drain(channel, spy)
            assert message.delivery_info["routing_key"] == record["routing_key"], record["case"]
            assert message.body == record["body"].encode("ascii"), record["case"]
            assert message.props == KOMBU_AMQP_PROPS, record["case"]
        # the replica queue got the broadcasts and the directed SYNC; nothing else
        assert len(_drain(channel, replica)) == len(records)
    finally:
        producer.close()
        cleanup_amqp("", queue_family(replica))


def test_amqp_retry_and_dead_letter_keys(amqp_setup):
    """A replica retry goes to `cqrs.<q>.<id>` (retries+1); the dead letter to
    `cqrs.<dlq>.<id>` with an AMQP expiration in ms, body unchanged apart from retries."""
    options, channel, spy = amqp_setup
    (record,) = [r for r in golden("pika") if r["case"] == "failing_original_save"]
    (dead_golden,) = [r for r in golden("pika") if r["case"] == "replica_dead_letter"]
    consumer = KombuTransport(
        {
            **options,
            "replica": {"CQRS_MAX_RETRIES": 1, "CQRS_RETRY_DELAY": 0.2, "dead_message_ttl": 600},
        }
    )
    consumer.declare(["golden_failing"])
    channel.queue_declare(spy, durable=False, auto_delete=True)
    channel.queue_bind(spy, options["exchange"], "#")
    producer = KombuTransport({**options, "queue": None})
    expires, fresh_body = _fresh_golden(record)
    producer.produce(_golden_payload(record, None, expires=expires))
    recorder = Recorder(lambda p, seen: Outcome.retry(reason="cqrs_create raised"))
    try:
        consume_until(
            consumer,
            recorder,
            lambda: len(consumer.dead_letters()) == 1,
            cqrs_ids=["golden_failing"],
            timeout=20,
        )
    finally:
        producer.close()
        consumer.close()
    seen = _drain(channel, spy, expect=3)
    keys = [m.delivery_info["routing_key"] for m in seen]
    queue, dlq = options["queue"], f"dead_letter_{options['queue']}"
    assert keys == ["golden_failing", f"cqrs.{queue}.golden_failing", f"cqrs.{dlq}.golden_failing"]
    original, retried, dead = (m.body for m in seen)
    assert original == fresh_body
    assert retried == original.replace(b'"retries":0', b'"retries":1')
    assert dead == retried
    assert json.loads(dead) == json.loads(dead_golden["body"]) | {
        k: json.loads(dead)[k]
        for k in (
            "instance_data",
            "instance_pk",
            "expires",
            "correlation_id",
            "meta",
            "previous_data",
        )
    }
    assert seen[2].props["expiration"] == dead_golden["properties"]["expiration"] == "600000"
    assert seen[2].props["content_type"] == "text/plain"
    assert seen[2].props["delivery_mode"] == 2


def test_redis_envelope_matches_kombu_golden(backend_options):
    """The Redis list item has the envelope shape upstream KombuTransport wrote."""
    options = backend_options("redis")
    options.pop("transport_options")  # real key names, as upstream; cleaned up below
    (record,) = golden("kombu-redis")
    expected = json.loads(record["redis_envelope"])
    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=REDIS_DB)
    exchange, queue = options["exchange"], options["queue"]
    replica = KombuTransport(options)
    replica.declare(["golden_product"])
    producer = KombuTransport({**options, "queue": None})
    try:
        producer.produce(_golden_payload(record, None))
        raw = client.rpop(queue)
        assert raw is not None
        envelope = json.loads(raw)
        assert base64.b64decode(envelope["body"]) == record["body"].encode()
        assert set(envelope) == set(expected)
        for key in ("content-encoding", "content-type", "headers"):
            assert envelope[key] == expected[key]
        props, want = envelope["properties"], expected["properties"]
        assert set(props) == set(want)
        assert {k: props[k] for k in ("delivery_mode", "priority", "body_encoding")} == {
            k: want[k] for k in ("delivery_mode", "priority", "body_encoding")
        }
        assert props["delivery_info"] == {"exchange": exchange, "routing_key": "golden_product"}
        assert client.exists(f"_kombu.binding.{exchange}")
    finally:
        producer.close()
        replica.close()
        for key in (queue, f"_kombu.binding.{exchange}", f"_kombu.binding_permanent.{exchange}"):
            client.delete(key)
        client.close()
