"""Messages a consumer releases (CQRS_ID it does not handle) must not block the queue.

RabbitMQ puts a nack-requeued message back at the head of its queue: with `prefetch_count`
released messages at the head, a consumer would receive only them, forever. Released messages
are therefore republished to the tail of the same queue (confirmed, then the original acked).
"""

from __future__ import annotations

import pytest

from cqrs_core import codec
from cqrs_core.testing import Recorder, consume_until
from cqrs_core.testing.suite import make_payload, unique_name
from cqrs_rabbitmq import RabbitMQTransport

pytestmark = [pytest.mark.broker("rabbitmq"), pytest.mark.timeout(60)]

PREFETCH = 10
ROUTING_KEY_HEADER = "x-cqrs-routing-key"
FAST = {"publish_timeout": 3, "connection_timeout": 2, "reconnect_delay": 0.1, "heartbeat": 10}


@pytest.fixture
def options(rabbit_url, cleanup):
    queue, exchange = unique_name("replica"), unique_name("x")
    cleanup(queue=queue, exchange=exchange)
    return {
        "url": rabbit_url,
        "queue": queue,
        "exchange": exchange,
        "consumer_prefetch_count": PREFETCH,
        "rabbitmq": dict(FAST),
    }


def drain(amqp, queue):
    """Every message now in `queue` as (routing key, headers, payload cqrs_id, pk); all acked."""
    got = []
    while True:
        method, properties, body = amqp.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        payload = codec.decode(body, default_ttl=None)
        got.append((method.routing_key, properties.headers or {}, payload.cqrs_id, payload))


def test_released_messages_at_the_head_do_not_starve_the_consumer(options, amqp):
    """prefetch_count messages for "b" ahead of one for "a": the "a" one is still applied."""
    with RabbitMQTransport(options) as transport:
        transport.declare(["a", "b"])
        transport.produce_many(
            [make_payload(pk, cqrs_id="b") for pk in range(1, PREFETCH + 1)]
            + [make_payload(100, cqrs_id="a")]
        )
        recorder = Recorder()
        consume_until(transport, recorder, lambda: recorder.count() >= 1, cqrs_ids=["a"], timeout=8)
    assert [(p.cqrs_id, p.instance_pk) for p in recorder.payloads] == [("a", 100)]
    left = drain(amqp, options["queue"])
    assert sorted((cqrs_id, p.instance_pk) for _key, _headers, cqrs_id, p in left) == [
        ("b", pk) for pk in range(1, PREFETCH + 1)
    ], "released messages were lost or duplicated"
    for key, headers, _cqrs_id, _payload in left:
        if key != "b":  # republished to the tail: the original key travels in a header
            assert key == options["queue"]
            assert headers[ROUTING_KEY_HEADER] == "b"


def test_released_directed_sync_keeps_its_target_queue(options):
    """A released `cqrs.<queue>.<id>` SYNC is still seen as aimed at the queue afterwards."""
    queue = options["queue"]
    with RabbitMQTransport(options) as transport:
        transport.declare(["a", "b"])
        transport.produce_many(
            [make_payload(1, cqrs_id="b", queue=queue)]
            + [make_payload(pk, cqrs_id="b") for pk in range(2, PREFETCH + 1)]
            + [make_payload(100, cqrs_id="a")]
        )
        only_a = Recorder()
        consume_until(transport, only_a, lambda: only_a.count() >= 1, cqrs_ids=["a"], timeout=8)
        assert only_a.pks() == [100]
        only_b = Recorder()
        consume_until(
            transport, only_b, lambda: only_b.count() >= PREFETCH, cqrs_ids=["b"], timeout=10
        )
    assert sorted(only_b.pks()) == list(range(1, PREFETCH + 1))
    queues = {p.instance_pk: p.queue for p in only_b.payloads}
    assert queues[1] == queue
    assert all(queues[pk] is None for pk in range(2, PREFETCH + 1))


def test_dead_letter_for_an_id_without_binding_goes_to_the_dead_letter_queue(options, amqp):
    """A handler that dead-letters a CQRS_ID this consumer never bound (a key routed into the
    queue by hand, a removed model) must not loop on NO_ROUTE: the letter reaches the queue."""
    from cqrs_core.messages import Outcome, decides_unlisted_ids

    queue = options["queue"]
    with RabbitMQTransport(options) as transport:
        transport.declare(["a"])
        amqp.queue_bind(queue, options["exchange"], routing_key="stray")
        transport.produce_many([make_payload(1, cqrs_id="stray"), make_payload(2, cqrs_id="a")])
        recorder = Recorder(
            lambda payload, seen: (
                Outcome.dead("no model") if payload.cqrs_id == "stray" else Outcome.applied()
            )
        )
        handler = decides_unlisted_ids(recorder)
        consume_until(
            transport,
            handler,
            lambda: len(transport.dead_letters()) == 1 and recorder.count() >= 2,
            cqrs_ids=["a"],
            timeout=20,
        )
        (letter,) = transport.dead_letters()
    assert codec.decode(letter.body, default_ttl=None).cqrs_id == "stray"
    assert letter.reason == "no model"
    assert recorder.seen == {("stray", 1): 1, ("a", 2): 1}, "the stray letter went round again"
    assert drain(amqp, queue) == []
