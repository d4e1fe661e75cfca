"""Redis-specific behaviour beyond the conformance suite: key layout, settling, faults."""

from __future__ import annotations

import json
import threading
import time

import pytest
from cqrs_core import ConfigurationError, Outcome, PublishError, SignalType, codec
from cqrs_core.testing.consuming import Recorder, consume_until
from cqrs_core.testing.suite import CQRS_A, IDS, make_payload

from cqrs_redis_streams import RedisStreamsTransport


def _pending(client, stream, group):
    return client.xpending(stream, group)["pending"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"redis_streams": {"prefx": "x"}}, "Unknown key(s) in CQRS['redis_streams']: prefx"),
        ({"redis_streams": {"url": "redis://x/1"}}, "url (the URL is CQRS['url'])"),
        ({"redis_streams": {"block": 5}}, "'block'] must be > 0 and <= 1 second"),
        ({"url": "amqp://localhost"}, "must be a Redis URL"),
        ({"redis_streams": {"claim_min_idle": -1}}, "number of seconds >= 0"),
    ],
)
def test_bad_settings_name_the_key(options, message):
    with pytest.raises(ConfigurationError) as info:
        RedisStreamsTransport(options)
    assert message in str(info.value)


def test_unreachable_redis_is_a_publish_error_that_says_what_to_check(tcp_proxy):
    proxy = tcp_proxy("127.0.0.1", 6379)
    proxy.refuse()
    transport = RedisStreamsTransport(
        {"url": f"redis://{proxy.address}/0", "redis_streams": {"connect_timeout": 1}}
    )
    with pytest.raises(PublishError) as info:
        transport.produce(make_payload())
    assert f"Redis at 127.0.0.1:{proxy.port} is unreachable" in str(info.value)
    assert "CQRS['url']" in str(info.value)
    transport.close()


def test_retry_is_stored_and_original_acked(stream_options, redis_client):
    prefix, queue = stream_options["exchange"], stream_options["queue"]
    with (
        RedisStreamsTransport(stream_options) as consumer,
        RedisStreamsTransport(stream_options) as producer,
    ):
        consumer.declare(IDS)
        producer.produce_many([make_payload(1), make_payload(2)])
        recorder = Recorder(
            lambda p, seen: Outcome.retry(60, "later") if p.instance_pk == 1 else Outcome.dead("no")
        )
        consume_until(consumer, recorder, lambda: recorder.count() >= 2, cqrs_ids=IDS, settle=0.3)
        stream = f"{prefix}:{CQRS_A}"
        assert _pending(redis_client, stream, queue) == 0
        ((member, due_ms),) = redis_client.zrange(f"{prefix}:retry:{queue}", 0, -1, withscores=True)
        seconds, micros = redis_client.time()
        assert 50_000 < due_ms - (seconds * 1000 + micros // 1000) <= 60_000
        retry = json.loads(member)
        assert (retry["cqrs_id"], retry["reason"]) == (CQRS_A, "later")
        payload = codec.decode(retry["body"])
        assert (payload.instance_pk, payload.retries) == (1, 1)
        ((_, dead),) = redis_client.xrange(f"{prefix}:dead:{queue}")
        assert dead[b"reason"] == b"no" and dead[b"cqrs_id"] == CQRS_A.encode()


def test_directed_sync_for_another_service_is_acked_not_applied(stream_options, redis_client):
    prefix, queue = stream_options["exchange"], stream_options["queue"]
    with (
        RedisStreamsTransport(stream_options) as consumer,
        RedisStreamsTransport(stream_options) as producer,
    ):
        consumer.declare(IDS)
        producer.produce(make_payload(1, signal_type=SignalType.SYNC, queue="someone_else"))
        producer.produce(make_payload(2))
        recorder = Recorder()
        consume_until(consumer, recorder, lambda: recorder.count() >= 1, cqrs_ids=IDS, settle=0.3)
        assert recorder.pks() == [2]
        stream = f"{prefix}:{CQRS_A}"
        assert _pending(redis_client, stream, queue) == 0
        ((_, fields), _) = redis_client.xrange(stream)
        assert fields[b"queue"] == b"someone_else"


def test_consumers_of_one_group_share_the_work(stream_options):
    stream_options["redis_streams"]["claim_min_idle"] = 30
    stream_options["batch_size"] = 5
    with RedisStreamsTransport(stream_options) as producer:
        producer.declare(IDS)
        producer.produce_many([make_payload(pk) for pk in range(1, 41)])
    first, second = Recorder(), Recorder()
    done = lambda: first.count() + second.count() >= 40
    with RedisStreamsTransport(stream_options) as a, RedisStreamsTransport(stream_options) as b:
        thread = threading.Thread(
            target=consume_until, args=(b, second, done), kwargs={"cqrs_ids": IDS, "timeout": 20}
        )
        thread.start()
        consume_until(a, first, done, cqrs_ids=IDS, timeout=20, settle=0.3)
        thread.join()
    assert sorted(first.pks() + second.pks()) == list(range(1, 41))


def test_close_leaves_the_group_only_when_nothing_is_pending(stream_options, redis_client):
    prefix, queue = stream_options["exchange"], stream_options["queue"]
    stream = f"{prefix}:{CQRS_A}"
    with RedisStreamsTransport(stream_options) as producer:
        producer.declare(IDS)
        producer.produce(make_payload(1))
    clean = RedisStreamsTransport(stream_options)
    recorder = Recorder()
    consume_until(clean, recorder, lambda: recorder.count() >= 1, cqrs_ids=IDS)
    names = {c["name"].decode() for c in redis_client.xinfo_consumers(stream, queue)}
    assert clean.consumer_name in names
    clean.close()
    names = {c["name"].decode() for c in redis_client.xinfo_consumers(stream, queue)}
    assert clean.consumer_name not in names


def test_consumer_survives_a_dropped_connection(stream_options, tcp_proxy):
    proxy = tcp_proxy("127.0.0.1", 6379)
    through_proxy = dict(stream_options, url=f"redis://{proxy.address}/0")
    consumer = RedisStreamsTransport(through_proxy)
    producer = RedisStreamsTransport(stream_options)
    consumer.declare(IDS)
    recorder = Recorder()

    def trouble():
        time.sleep(0.5)
        proxy.refuse()
        time.sleep(1.0)
        proxy.accept()
        producer.produce(make_payload(5))

    thread = threading.Thread(target=trouble, daemon=True)
    thread.start()
    try:
        consume_until(consumer, recorder, lambda: recorder.count() >= 1, cqrs_ids=IDS, timeout=20)
    finally:
        thread.join()
        consumer.close()
        producer.close()
    assert recorder.pks() == [5]
    assert proxy.connections >= 2


def test_released_entry_stays_pending_until_a_consumer_that_wants_it_reclaims_it(
    stream_options, redis_client
):
    """An entry whose body names another CQRS_ID than its stream is not lost by a filtered one."""
    prefix, queue = stream_options["exchange"], stream_options["queue"]
    stream = f"{prefix}:{CQRS_A}"
    with RedisStreamsTransport(stream_options) as setup:
        setup.declare(IDS)
    stray = codec.encode(make_payload(3, cqrs_id=IDS[1]))
    redis_client.xadd(stream, {"body": stray, "queue": ""})
    with RedisStreamsTransport(stream_options) as only_a:
        seen = Recorder()
        consume_until(
            only_a,
            seen,
            lambda: _pending(redis_client, stream, queue) == 1,
            cqrs_ids=(CQRS_A,),
            settle=0.8,
        )
        assert seen.count() == 0
        assert _pending(redis_client, stream, queue) == 1  # released, still not acked
    with RedisStreamsTransport(stream_options) as both:
        recorder = Recorder()
        consume_until(both, recorder, lambda: recorder.count() >= 1, cqrs_ids=IDS, settle=0.3)
    assert recorder.pks() == [3]
    assert _pending(redis_client, stream, queue) == 0
