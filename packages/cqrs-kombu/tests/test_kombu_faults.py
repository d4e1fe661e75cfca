"""Broker and consumer faults (Redis and AMQP): errors surface, nothing is lost.

Through a TCP proxy: refused and cut connections. On Redis also a consumer SIGKILLed while
messages keep arriving during a slow batch: kombu's BRPOP consumer left a BRPOP outstanding
while a batch was applied, and what Redis popped into the socket then died with the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cqrs_core.exceptions import PublishError
from cqrs_core.messages import Outcome
from cqrs_core.testing.consuming import Recorder, consume_until
from cqrs_core.testing.suite import IDS, make_payload
from cqrs_kombu import KombuTransport
from cqrs_kombu._testing import AMQP_HOST, AMQP_PORT, REDIS_DB, REDIS_HOST, REDIS_PORT

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
        consumer,
        handler,
        lambda: len(set(recorder.pks())) >= total,
        cqrs_ids=IDS,
        timeout=60,
        settle=0.5,
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
    assert not thread.is_alive()
    assert proxy.connections >= 2  # the outage really cut the consumer off: it reconnected
    assert [p.retries for p in recorder.payloads] == [0, 1]


def test_redis_held_retry_outlives_visibility_timeout_without_duplicate(backend_options):
    """A retry held by the delay scheduler longer than the visibility timeout is renewed,
    not restored behind the consumer's back (which would apply it twice)."""
    base = backend_options("redis")
    transport_options = {**base["transport_options"], "visibility_timeout": 1}
    options = {**base, "transport_options": transport_options, "replica": {"CQRS_RETRY_DELAY": 6}}
    consumer = KombuTransport(options)
    consumer.declare(IDS)
    KombuTransport(base).produce(make_payload(1))
    recorder = Recorder(
        lambda p, seen: Outcome.retry(reason="db down") if seen == 1 else Outcome.applied()
    )
    consume_until(
        consumer, recorder, lambda: recorder.count() >= 2, cqrs_ids=IDS, timeout=30, settle=3
    )
    consumer.close()
    assert [p.retries for p in recorder.payloads] == [0, 1]


VISIBILITY = 2.0


def _applied(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]


def _start(options: dict, path: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "cqrs_kombu._testing", json.dumps(options), str(path), "0.3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["redis", "filesystem"])
def test_consumer_sigkilled_while_messages_arrive_loses_nothing(backend_options, tmp_path, kind):
    """A consumer killed mid-batch loses nothing: its messages come back to the next one."""
    base = backend_options(kind)
    transport_options = dict(base.get("transport_options", {}))
    if kind == "redis":
        transport_options["visibility_timeout"] = VISIBILITY
    options = {
        **base,
        "transport_options": transport_options,
        "consumer_prefetch_count": 50,
        "replica": {"batch_size": 50, "batch_timeout": 0.05},
    }
    KombuTransport(options).declare(IDS)
    other = f"{options['queue']}_other"  # a second replica bound to the same keys
    KombuTransport({**options, "queue": other}).declare(IDS)
    path = tmp_path / "applied.txt"
    sent: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        with KombuTransport({**options, "queue": None}) as producer:
            pk = 0
            while not stop.is_set():
                pk += 1
                producer.produce(make_payload(pk))
                sent.append(pk)
                time.sleep(0.01)

    consumer = _start(options, path)
    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while len(_applied(path)) < 40:
            time.sleep(0.05)
        time.sleep(0.15)  # most likely inside a slow batch now
        os.kill(consumer.pid, signal.SIGKILL)
        consumer.wait(10)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(10)
    consumer = _start(options, path)
    try:
        deadline = time.monotonic() + 30 + VISIBILITY
        while set(sent) - set(_applied(path)) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        consumer.terminate()
        consumer.wait(10)
    applied = _applied(path)
    lost = sorted(set(sent) - set(applied))
    copies = _redis_len(base, other) if kind == "redis" else _files_of(base, other)
    print(
        f"sent {len(sent)}, applied {len(applied)}, lost {len(lost)}: {lost[:10]}; other {copies}"
    )
    assert lost == []
    assert copies == len(sent), "a restore went through the exchange again (fanned out)"


def _files_of(options: dict, queue: str) -> int:
    folder = Path(options["url"][len("filesystem://") :])
    return sum(1 for name in os.listdir(folder) if name.endswith(f".{queue}.msg"))


def _redis_len(options: dict, queue: str) -> int:
    import redis

    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=REDIS_DB)
    try:
        return int(client.llen(options["transport_options"]["global_keyprefix"] + queue))
    finally:
        client.close()
