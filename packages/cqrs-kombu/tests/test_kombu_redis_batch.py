"""Redis: a batch is acknowledged in one round trip (`AtomicTaker.ack_many`), on real Redis.

What must hold: an acknowledged message's records (kombu's `unacked` hash and
`unacked_index`) are gone, an unacknowledged one's stay and bring it back, and retries, dead
letters and releases settle exactly as with one ack at a time.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from kombu import Connection

from cqrs_core import codec
from cqrs_core.messages import Outcome
from cqrs_core.testing.consuming import Recorder, consume_until
from cqrs_core.testing.suite import CQRS_B, IDS, make_payload
from cqrs_kombu import KombuTransport
from cqrs_kombu._redis import AtomicTaker, _loads
from cqrs_kombu._testing import REDIS_DB, REDIS_HOST, REDIS_PORT, redis_queue_length


def _client() -> redis.Redis:
    return redis.Redis(REDIS_HOST, REDIS_PORT, db=REDIS_DB)


def _records(options: dict[str, Any]) -> tuple[int, int]:
    """(entries in `unacked`, entries in `unacked_index`) under the test's key prefix."""
    prefix = options["transport_options"]["global_keyprefix"]
    client = _client()
    try:
        return client.hlen(f"{prefix}unacked"), client.zcard(f"{prefix}unacked_index")
    finally:
        client.close()


def test_batch_ack_removes_every_record_and_nothing_comes_back(backend_options):
    options = {**backend_options("redis"), "replica": {"batch_size": 50}}
    consumer = KombuTransport(options)
    consumer.declare(IDS)
    producer = KombuTransport(options)
    producer.produce_many([make_payload(pk) for pk in range(120)])
    producer.close()
    recorder = Recorder()
    consume_until(consumer, recorder, lambda: recorder.count() >= 120, cqrs_ids=IDS, settle=0.5)
    consumer.close()
    assert sorted(p.instance_pk for p in recorder.payloads) == list(range(120))
    assert max(recorder.batches) > 1  # really acknowledged in batches
    assert _records(options) == (0, 0)
    assert redis_queue_length(options, options["queue"]) == 0

    again = Recorder()
    second = KombuTransport(options)
    _expect_timeout(second, again)
    second.close()
    assert again.payloads == []


def _expect_timeout(transport: KombuTransport, recorder: Recorder) -> None:
    with pytest.raises(AssertionError):
        consume_until(transport, recorder, lambda: False, cqrs_ids=IDS, timeout=1.5)


def test_mixed_outcomes_in_one_batch_settle_as_before(backend_options):
    """Applied, retried, dead-lettered and released messages of one batch, acked together."""
    options = {**backend_options("redis"), "replica": {"batch_size": 20, "CQRS_RETRY_DELAY": 0}}

    def decide(payload: Any, seen: int) -> Outcome:
        if payload.instance_pk == 1 and seen == 1:
            return Outcome.retry(0, "try again")
        if payload.instance_pk == 2:
            return Outcome.dead("bad row")
        return Outcome.applied()

    consumer = KombuTransport(options)
    consumer.declare(IDS)
    producer = KombuTransport(options)
    producer.produce_many([make_payload(pk) for pk in range(10)])
    producer.close()
    recorder = Recorder(decide)
    consume_until(consumer, recorder, lambda: recorder.count() >= 11, cqrs_ids=IDS, settle=0.5)
    assert sorted(p.instance_pk for p in recorder.payloads) == [0, 1, 1, *range(2, 10)]
    assert [p.retries for p in recorder.payloads if p.instance_pk == 1] == [0, 1]
    consumer.close()
    assert _records(options) == (0, 0)
    assert redis_queue_length(options, options["queue"]) == 0
    reader = KombuTransport(options)
    dead = reader.dead_letters()
    reader.close()
    assert [letter.payload.instance_pk for letter in dead if letter.payload] == [2]


def test_release_in_a_batch_goes_to_the_tail_once(backend_options):
    """A consumer of CQRS_A only gives CQRS_B's message back (RELEASE) and acks the rest."""
    options = {**backend_options("redis"), "replica": {"batch_size": 20}}
    consumer = KombuTransport(options)
    consumer.declare(IDS)
    producer = KombuTransport(options)
    producer.produce_many([make_payload(1), make_payload(2, CQRS_B), make_payload(3)])
    producer.close()
    recorder = Recorder(
        lambda p, seen: Outcome.release() if p.cqrs_id == CQRS_B else Outcome.applied()
    )
    consume_until(consumer, recorder, lambda: recorder.count() >= 3, cqrs_ids=IDS, settle=0.3)
    consumer.close()
    assert _records(options) == (0, 0)
    # the released message is back in our queue, once (it may have been taken again)
    assert recorder.count() >= 3
    assert redis_queue_length(options, options["queue"]) <= 1


def test_unacknowledged_records_stay_and_come_back(backend_options):
    """ack_many of part of what was taken: the rest keeps its records and is restored."""
    options = backend_options("redis")
    consumer = KombuTransport(options)
    consumer.declare(IDS)
    producer = KombuTransport(options)
    producer.produce_many([make_payload(pk) for pk in range(6)])
    producer.close()
    consumer.close()

    connection = Connection(options["url"], transport_options=options["transport_options"])
    channel = connection.channel()
    taker = AtomicTaker(channel, options["queue"])
    taken = taker.take(10)
    assert len(taken) == 6
    assert _records(options) == (6, 6)
    taker.ack_many(taken[:4])
    assert _records(options) == (2, 2)
    assert all(message.acknowledged for message in taken[:4])
    assert not any(message.acknowledged for message in taken[4:])
    taker.ack_many(taken[:4])  # acknowledged ones are skipped, not sent again
    assert _records(options) == (2, 2)
    # a clean close gives back what is not acknowledged (what a restart would get)
    connection.release()
    assert _records(options) == (0, 0)
    assert redis_queue_length(options, options["queue"]) == 2

    again = KombuTransport(options)
    recorder = Recorder()
    consume_until(again, recorder, lambda: recorder.count() >= 2, cqrs_ids=IDS, settle=0.3)
    again.close()
    assert sorted(p.instance_pk for p in recorder.payloads) == sorted(
        codec.decode(message.body).instance_pk for message in taken[4:]
    )


def test_envelope_decoding_matches_kombu():
    from kombu.utils.json import dumps, loads

    envelope = {
        "body": "eyJhIjogMX0=",
        "headers": {"x": "ü"},
        "properties": {"delivery_tag": "t-1", "delivery_info": {"exchange": "x"}},
    }
    item = dumps(envelope).encode()
    assert _loads(item) == loads(item) == envelope
    typed = dumps({"headers": {"at": uuid.UUID("0b4e1e32-8f2d-4b0e-9d8a-6a3b2f3c1d00")}}).encode()
    assert b"__type__" in typed
    assert _loads(typed) == loads(typed)
    assert isinstance(_loads(typed)["headers"]["at"], uuid.UUID)
