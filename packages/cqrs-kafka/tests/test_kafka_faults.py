"""Faults: broker unreachable, connections cut, consumer SIGKILLed mid-batch.

Kafka clients connect to the address the broker advertises in metadata, not to the bootstrap
address. So these tests run a second Tansu that advertises the proxy's port: every connection,
not only the bootstrap, goes through the proxy and `refuse()` / `cut()` really isolate clients.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cqrs_core.exceptions import PublishError
from cqrs_core.testing.consuming import Recorder, consume_until
from cqrs_core.testing.plugin import service_unavailable
from cqrs_core.testing.proxy import TcpProxy
from cqrs_core.testing.suite import make_payload
from cqrs_kafka import KafkaTransport
from cqrs_kafka.testing import FAST_CONSUMER, TansuBroker, cleanup, free_port

pytestmark = pytest.mark.broker("kafka")
CQRS_ID = "orders"


@pytest.fixture(scope="module")
def proxied():
    """A Tansu reachable only through a TcpProxy (it advertises the proxy's port)."""
    port = free_port()
    proxy = TcpProxy("127.0.0.1", port)
    try:
        broker = TansuBroker(port, advertised_port=proxy.port)
    except Exception as exc:  # noqa: BLE001 - any failure means no broker
        proxy.close()
        service_unavailable("tansu (for the proxy tests)", exc)
    yield proxy, broker
    broker.stop()
    proxy.close()


@pytest.fixture
def options(proxied, unique):
    proxy, broker = proxied
    proxy.accept()
    prefix, queue = unique("f") + ".", unique("replica")
    yield {
        "bootstrap_servers": broker.bootstrap,
        "queue": queue,
        "kafka": {
            "topic_prefix": prefix,
            "partitions": 2,
            "replication_factor": 1,
            "publish_timeout": 3,
            "consumer": dict(FAST_CONSUMER),
            "producer": {"reconnect.backoff.max.ms": 500},
        },
    }
    proxy.accept()
    cleanup(broker.bootstrap, prefix, [queue])


def test_unreachable_broker_is_a_publish_error_not_a_hang(proxied, options):
    proxy, _ = proxied
    producer = KafkaTransport(options)
    producer.produce(make_payload(1, CQRS_ID))  # connected, topic known
    proxy.refuse()
    started = time.monotonic()
    with pytest.raises(PublishError):
        producer.produce(make_payload(2, CQRS_ID))
    assert time.monotonic() - started < 3 + 10, "publish must give up after publish_timeout"
    with pytest.raises(PublishError):
        KafkaTransport(options).produce(make_payload(3, "never_created"))
    proxy.accept()
    producer.produce(make_payload(4, CQRS_ID))  # recovers once the broker is back
    producer.close()


def test_cut_connections_lose_nothing(proxied, options):
    proxy, _ = proxied
    consumer = KafkaTransport(options)
    consumer.declare([CQRS_ID])
    producer = KafkaTransport(options)
    producer.produce_many([make_payload(pk, CQRS_ID) for pk in range(20)])
    recorder = Recorder()
    state = {"cut": False}

    def until():
        if not state["cut"] and recorder.count() >= 1:
            state["cut"] = True
            proxy.cut()
            producer.produce_many([make_payload(pk, CQRS_ID) for pk in range(20, 40)])
        return set(recorder.pks()) >= set(range(40))

    consume_until(consumer, recorder, until, cqrs_ids=[CQRS_ID], timeout=60, settle=0.3)
    assert set(recorder.pks()) == set(range(40))
    producer.close()


def test_consumer_killed_mid_batch_is_redelivered(proxied, options, tmp_path: Path):
    consumer = KafkaTransport(options)
    consumer.declare([CQRS_ID])
    expected = set(range(30))
    producer = KafkaTransport(options)
    producer.produce_many([make_payload(pk, CQRS_ID) for pk in sorted(expected)])
    producer.close()
    seen_file = tmp_path / "seen.txt"
    script = Path(__file__).with_name("_killable_consumer.py")
    child_options = {**options, "replica": {"batch_size": 10}}
    child = subprocess.Popen(
        [sys.executable, str(script), json.dumps(child_options), str(seen_file), CQRS_ID],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 40
        while not (seen_file.exists() and seen_file.read_text().strip()):
            assert child.poll() is None, "the consumer process died on its own"
            assert time.monotonic() < deadline, "the consumer process got nothing"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    in_killed_batch = {int(line) for line in seen_file.read_text().split()}
    assert in_killed_batch
    recorder = Recorder()
    consume_until(
        consumer,
        recorder,
        lambda: set(recorder.pks()) >= expected,
        cqrs_ids=[CQRS_ID],
        timeout=60,
        settle=0.3,
    )
    lost = expected - set(recorder.pks())
    assert lost == set()
    assert in_killed_batch <= set(recorder.pks()), "the unsettled batch must be redelivered"
