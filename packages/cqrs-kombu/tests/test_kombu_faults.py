"""Broker faults through a TCP proxy (Redis and AMQP): errors surface, nothing is lost."""

from __future__ import annotations

import threading
import time

import pytest

from cqrs_core.exceptions import PublishError
from cqrs_core.messages import Outcome
from cqrs_core.testing._consuming import Recorder, consume_until
from cqrs_core.testing.suite import IDS, make_payload
from cqrs_kombu import KombuTransport
from cqrs_kombu._testing import AMQP_HOST, AMQP_PORT, REDIS_HOST, REDIS_PORT

TARGETS = {"amqp": (AMQP_HOST, AMQP_PORT), "redis": (REDIS_HOST, REDIS_PORT)}


@pytest.fixture(params=["amqp", "redis"])
def proxied(request, backend_options, tcp_proxy):
    """(options through the proxy, options straight to the broker, proxy)."""
    kind = request.param
    direct = backend_options(kind)
    proxy = tcp_proxy(*TARGETS[kind])
    through = dict(direct)
    through["url"] = direct["url"].replace(f":{TARGETS[kind][1]}", f":{proxy.port}")
    return through, direct, proxy


def test_unreachable_broker_raises_publish_error(proxied):
    """With the broker down, produce raises PublishError instead of hanging or dropping."""
    through, direct, proxy = proxied
    KombuTransport(direct).declare(IDS)
    producer = KombuTransport(through)
    producer.produce(make_payload(1))  # connected and working first
    proxy.refuse()
    started = time.monotonic()
    with pytest.raises(PublishError):
        producer.produce(make_payload(2))
    print(f"PublishError after {time.monotonic() - started:.2f} s")
    proxy.accept()
    producer.produce(make_payload(3))  # and it recovers by itself once the broker is back
    producer.close()


def test_connection_cut_mid_batch_loses_nothing(proxied):
    """A connection cut while a batch is being applied: the consumer reconnects and every
    message is applied at least once (lost == 0)."""
    through, direct, proxy = proxied
    consumer = KombuTransport({**through, "consumer_prefetch_count": 20})
    consumer.declare(IDS)
    total = 200
    producer = KombuTransport(direct)
    producer.produce_many([make_payload(pk) for pk in range(1, total + 1)])
    producer.close()
    recorder = Recorder()
    cuts: list[int] = []
    lock = threading.Lock()

    def handler(payloads):
        outcomes = recorder(payloads)
        with lock:
            if len(cuts) < 2 and recorder.count() >= 40 * (len(cuts) + 1):
                cuts.append(recorder.count())
                proxy.cut()  # the batch is applied but its acks cannot reach the broker
        return outcomes

    consume_until(
        consumer, handler, lambda: len(set(recorder.pks())) >= total, cqrs_ids=IDS,
        timeout=60, settle=0.5,
    )
    consumer.close()
    lost = set(range(1, total + 1)) - set(recorder.pks())
    assert len(cuts) == 2
    assert proxy.connections >= 3  # it really reconnected after each cut
    assert lost == set()
    print(f"{len(recorder.pks()) - total} redelivered duplicate(s), 0 lost")


def test_consumer_survives_broker_outage_and_keeps_retry(proxied):
    """A pending retry outlives a broker outage seen by the consumer."""
    through, direct, proxy = proxied
    consumer = KombuTransport({**through, "replica": {"CQRS_RETRY_DELAY": 0.5}})
    consumer.declare(IDS)
    KombuTransport(direct).produce(make_payload(1))
    recorder = Recorder(
        lambda p, seen: Outcome.retry(reason="db down") if seen == 1 else Outcome.applied()
    )

    def outage():
        while recorder.count() < 1:
            time.sleep(0.02)
        time.sleep(0.3)  # the retry is now on the broker (delay queue); an outage while the
        # handler still runs would redeliver the original instead, which is also correct
        proxy.refuse()
        time.sleep(1.5)
        proxy.accept()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    consume_until(consumer, recorder, lambda: recorder.count() >= 2, cqrs_ids=IDS, timeout=30)
    thread.join(5)
    consumer.close()
    assert [p.retries for p in recorder.payloads] == [0, 1]
