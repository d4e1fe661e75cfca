"""What really goes over RabbitMQ, compared with django-cqrs 3.1.0 captures (golden/).

A spy queue bound with `#` sees every message on the exchange, so routing keys, properties and
body bytes are checked as a django-cqrs 3.x service on the other side would see them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pika
import pytest

from cqrs_core import codec
from cqrs_core.constants import SignalType
from cqrs_core.messages import Outcome
from cqrs_core.testing.suite import unique_name
from cqrs_rabbitmq import RabbitMQTransport

pytestmark = [pytest.mark.broker("rabbitmq"), pytest.mark.timeout(60)]

# Captures of upstream django-cqrs 3.1.0, kept with cqrs-core's tests (one copy in the repo).
GOLDEN = Path(__file__).resolve().parents[2] / "cqrs-core" / "tests" / "golden"
UPSTREAM_PROPERTIES = pika.BasicProperties(content_type="text/plain", delivery_mode=2)
_EXPIRES = re.compile(rb'"expires":"[^"]*"')


def golden(case: str, transport: str = "pika") -> list[dict]:
    path = GOLDEN / "upstream-3.1.0.jsonl"
    if not path.is_file():
        pytest.fail(f"golden captures not found at {path}; set CQRS_GOLDEN_DIR")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    found = [r for r in records if r["case"] == case and r["transport"] == transport]
    assert found, f"no golden record {case!r}"
    return found


def fresh(body: bytes, expires: bytes) -> bytes:
    """The captured body with `expires` moved into the future (captures age; bytes stay alike)."""
    return _EXPIRES.sub(b'"expires":"' + expires + b'"', body)


@pytest.fixture
def future() -> bytes:
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=2)
    return when.isoformat().encode()


@pytest.fixture
def names(cleanup):
    queue, exchange = unique_name("replica"), unique_name("x")
    cleanup(queue=queue, exchange=exchange)
    return queue, exchange


@pytest.fixture
def spy(amqp, names):
    """A queue bound with `#` on the test exchange; `spy()` drains it."""
    _queue, exchange = names
    amqp.exchange_declare(exchange, "topic", durable=True)
    spy_queue = amqp.queue_declare("", exclusive=True).method.queue
    amqp.queue_bind(spy_queue, exchange, "#")

    def drain(expected: int = 1, timeout: float = 15.0):
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            method, properties, body = amqp.basic_get(spy_queue, auto_ack=True)
            if method is None:
                amqp.connection.sleep(0.05)
                continue
            got.append((method.routing_key, properties, body))
        return got

    return drain


def transport(rabbit_url, names, **extra):
    queue, exchange = names
    return RabbitMQTransport({"url": rabbit_url, "queue": queue, "exchange": exchange, **extra})


def assert_upstream_properties(properties, record, *, allow_headers=False):
    """Properties as upstream's pika transport sets them; extra headers only where allowed."""
    for key, value in record["properties"].items():
        assert getattr(properties, key) == value, key
    for key in record["properties_absent"]:
        if key == "headers" and allow_headers:
            continue
        assert getattr(properties, key) is None, key


@pytest.mark.parametrize(
    "case", ["save_create", "save_update", "delete", "delete_custom", "uuid_pk_save"]
)
def test_broadcast_matches_upstream_bytes(case, rabbit_url, names, spy, future):
    """SAVE/DELETE: routing key `<cqrs_id>`, upstream properties, byte-identical body."""
    record = golden(case)[0]
    body = fresh(record["body"].encode(), future)
    with transport(rabbit_url, names) as producer:
        producer.produce(codec.decode(body))
    ((key, properties, got),) = spy()
    assert key == record["routing_key"]
    assert_upstream_properties(properties, record)
    assert got == body


def test_directed_sync_matches_upstream(rabbit_url, names, spy, future):
    """A SYNC for one queue goes to `cqrs.<queue>.<cqrs_id>`; the body has no `queue` key."""
    record = golden("sync_directed")[0]
    body = fresh(record["body"].encode(), future)
    with transport(rabbit_url, names) as producer:
        producer.produce(codec.decode(body, queue="golden_replica"))
    ((key, properties, got),) = spy()
    assert key == "cqrs.golden_replica.golden_product" == record["routing_key"]
    assert_upstream_properties(properties, record)
    assert got == body
    assert b'"queue"' not in got


def test_produce_many_keeps_order_and_bytes(rabbit_url, names, spy, future):
    """A pipelined burst arrives in publish order with the upstream bytes."""
    records = golden("bulk_create") + golden("bulk_update")
    bodies = [fresh(r["body"].encode(), future) for r in records]
    with transport(rabbit_url, names) as producer:
        producer.produce_many([codec.decode(b) for b in bodies])
    got = spy(expected=len(bodies))
    assert [g[2] for g in got] == bodies
    assert {g[0] for g in got} == {"golden_product"}


def test_retry_and_dead_letter_look_like_upstreams(rabbit_url, names, amqp, spy, future):
    """A failing upstream message: retry then dead letter, byte for byte as upstream's replica.

    The original is published raw, as a django-cqrs 3.x master does. Our replica's retry comes
    back through the exchange under `cqrs.<queue>.<cqrs_id>` with only `retries` changed, and
    the dead letter goes to `cqrs.<dlq>.<cqrs_id>` with the expiration in ms and the body as
    received; the dead-letter queue holds the same bytes.
    """
    queue, exchange = names
    original = fresh(golden("failing_original_save")[0]["body"].encode(), future)
    requeue = golden("replica_requeue")[0]
    dead = golden("replica_dead_letter")[0]
    from_dlq = golden("replica_dead_letter_from_dlq")[0]
    replica = transport(
        rabbit_url,
        names,
        replica={"CQRS_MAX_RETRIES": 1, "CQRS_RETRY_DELAY": 0.3, "dead_message_ttl": 600},
    )
    replica.declare(["golden_failing"])
    amqp.basic_publish(exchange, "golden_failing", original, UPSTREAM_PROPERTIES)

    def always_fails(payloads):
        raise RuntimeError("cqrs_create failed")

    thread = threading.Thread(
        target=replica.consume, args=(always_fails,), kwargs={"cqrs_ids": ["golden_failing"]}
    )
    thread.start()
    try:
        seen = spy(expected=3)
    finally:
        replica.stop()
        thread.join(10)
    assert [key for key, _p, _b in seen] == [
        "golden_failing",
        f"cqrs.{queue}.golden_failing",
        f"cqrs.dead_letter_{queue}.golden_failing",
    ]
    _, retry_props, retry_body = seen[1]
    assert retry_body == fresh(requeue["body"].encode(), future)
    assert_upstream_properties(retry_props, requeue, allow_headers=True)
    assert "cqrs_create failed" in retry_props.headers["x-cqrs-retry-reason"]

    _, dead_props, dead_body = seen[2]
    assert dead_body == fresh(dead["body"].encode(), future)
    assert dead_props.expiration == "600000" == dead["properties"]["expiration"]
    assert_upstream_properties(dead_props, dead, allow_headers=True)
    assert "retries exhausted" in dead_props.headers["x-cqrs-dead-reason"]

    method, stored_props, stored = amqp.basic_get(f"dead_letter_{queue}", auto_ack=True)
    assert method.routing_key == f"cqrs.dead_letter_{queue}.golden_failing"
    assert stored == fresh(from_dlq["body"].encode(), future)
    assert stored_props.expiration == from_dlq["properties"]["expiration"]
    replica.close()


def test_topology_flags_match_upstream(rabbit_url, names, amqp):
    """Exchange and queues can be re-declared with upstream's exact flags (no arguments)."""
    queue, exchange = names
    with transport(rabbit_url, names) as replica:
        replica.declare(["golden_product"])
    # Passive=False re-declarations with upstream's flags: PRECONDITION_FAILED on any mismatch.
    amqp.exchange_declare(exchange, "topic", durable=True)
    amqp.queue_declare(queue, durable=True)
    amqp.queue_declare(f"dead_letter_{queue}", durable=True)
    amqp.basic_publish(exchange, f"cqrs.dead_letter_{queue}.golden_product", b"{}")
    amqp.basic_publish(exchange, f"cqrs.{queue}.golden_product", b"{}")
    amqp.basic_publish(exchange, "golden_product", b"{}")
    time.sleep(0.2)
    assert amqp.queue_declare(queue, passive=True).method.message_count == 2
    assert amqp.queue_declare(f"dead_letter_{queue}", passive=True).method.message_count == 1


def test_upstream_messages_are_consumed(rabbit_url, names, amqp, future):
    """Every message a django-cqrs 3.1.0 master produced is understood by our replica."""
    queue, exchange = names
    cases = [
        "save_create",
        "save_update",
        "sync_broadcast",
        "sync_directed",
        "delete",
        "delete_custom",
        "uuid_pk_save",
        "serializer_save",
    ]
    records = [r for case in cases for r in golden(case)]
    ids = sorted({r["routing_key"].rsplit(".", 1)[-1] for r in records})
    replica = transport(rabbit_url, names)
    replica.declare(ids)
    for record in records:
        key = record["routing_key"].replace("cqrs.golden_replica.", f"cqrs.{queue}.")
        amqp.basic_publish(
            exchange, key, fresh(record["body"].encode(), future), UPSTREAM_PROPERTIES
        )
    got = []

    def handler(payloads):
        got.extend(payloads)
        return [Outcome.applied()] * len(payloads)

    thread = threading.Thread(target=replica.consume, args=(handler,), kwargs={"cqrs_ids": ids})
    thread.start()
    deadline = time.monotonic() + 15
    while len(got) < len(records) and time.monotonic() < deadline:
        time.sleep(0.05)
    replica.stop()
    thread.join(10)
    assert len(got) == len(records)
    for record, payload in zip(records, got):
        sent = json.loads(record["body"])
        assert payload.signal_type is SignalType(sent["signal_type"])
        assert payload.cqrs_id == sent["cqrs_id"]
        assert dict(payload.instance_data) == sent["instance_data"]
        assert payload.instance_pk == sent["instance_pk"]
        assert payload.previous_data == sent["previous_data"]
        assert (payload.correlation_id, payload.meta) == (sent["correlation_id"], sent["meta"])
        assert payload.queue == (queue if record["case"] == "sync_directed" else None)
    assert replica.dead_letters() == []
    replica.close()
