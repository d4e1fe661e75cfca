"""Redis: `produce_many` sends a batch in pipelined round trips (`Sender.batch`), on real Redis.

What must hold: every message arrives once and in order, the exchange's bindings are read once
per batch instead of once per message, and a batch that fails part-way sends none of what it
had not flushed (the caller keeps the whole batch, so nothing is lost and nothing doubled).
"""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Producer
from kombu.transport import redis as kombu_redis

from cqrs_core.exceptions import PublishError
from cqrs_core.testing.consuming import Recorder, consume_until
from cqrs_core.testing.suite import CQRS_A, IDS, make_payload
from cqrs_kombu import KombuTransport
from cqrs_kombu._testing import redis_queue_length

pipelined = pytest.mark.skipif(
    not hasattr(Producer, "batch"), reason="kombu < 5.7 has no Producer.batch: one by one"
)
"""Only for what pipelining changes; arrival (whole, once, in order) is checked on every kombu."""


def test_a_large_batch_arrives_whole_and_in_order(backend_options):
    options = {**backend_options("redis"), "replica": {"batch_size": 100}}
    consumer = KombuTransport(options)
    consumer.declare(IDS)
    producer = KombuTransport(options)
    count = 2_500  # more than one pipeline flush (1,000 commands)
    producer.produce_many([make_payload(pk) for pk in range(count)])
    producer.close()
    assert redis_queue_length(options, options["queue"]) == count

    recorder = Recorder()
    consume_until(consumer, recorder, lambda: recorder.count() >= count, cqrs_ids=IDS, settle=0.5)
    consumer.close()
    assert [p.instance_pk for p in recorder.payloads] == list(range(count))


@pipelined
def test_bindings_are_read_once_per_batch(backend_options, monkeypatch):
    options = backend_options("redis")
    consumer = KombuTransport(options)
    consumer.declare(IDS)
    reads: list[str] = []
    read = kombu_redis.Channel.get_table

    def counting(self: Any, exchange: str) -> Any:
        reads.append(exchange)
        return read(self, exchange)

    monkeypatch.setattr(kombu_redis.Channel, "get_table", counting)
    producer = KombuTransport(options)
    producer.produce_many([make_payload(pk) for pk in range(300)])
    first = len(reads)
    producer.produce_many([make_payload(pk) for pk in range(300, 600)])
    producer.close()
    consumer.close()

    assert redis_queue_length(options, options["queue"]) == 600
    assert first == 1  # not one per message
    assert len(reads) == 2


@pipelined
def test_a_batch_failing_part_way_sends_nothing_unflushed(backend_options):
    options = backend_options("redis")
    consumer = KombuTransport(options)
    consumer.declare([CQRS_A])  # nothing is bound for the other id
    producer = KombuTransport(options)
    batch = [make_payload(pk) for pk in range(50)]
    batch.append(make_payload(50, cqrs_id="nobody_listens"))
    with pytest.raises(PublishError, match="no replica queue is bound"):
        producer.produce_many(batch)
    assert redis_queue_length(options, options["queue"]) == 0

    producer.produce_many(batch[:50])  # the caller (the outbox) sends the good ones again
    producer.close()
    consumer.close()
    assert redis_queue_length(options, options["queue"]) == 50
