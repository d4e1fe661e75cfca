"""Faults between the client and RabbitMQ, injected with a loopback TCP proxy.

Every test ends by checking that nothing was lost: the replica state built by an idempotent
handler (revision check, as dj_cqrs does) equals what the master sent. Duplicates are allowed
(at-least-once) and counted.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from urllib.parse import quote

import pytest

from cqrs_core.exceptions import ConfigurationError, PublishError
from cqrs_core.messages import Outcome
from cqrs_core.testing.suite import make_payload, unique_name
from cqrs_rabbitmq import RabbitMQTransport

pytestmark = [pytest.mark.broker("rabbitmq"), pytest.mark.timeout(90)]

IDS = ("conformance_a",)
FAST = {
    "publish_timeout": 3,
    "connection_timeout": 2,
    "reconnect_delay": 0.1,
    "reconnect_max_delay": 0.5,
    "heartbeat": 10,
}


class Replica:
    """An idempotent apply (keeps the highest revision per pk) that counts every application.

    `applied` counts applications per (pk, revision): above 1 is a duplicate delivery.
    """

    def __init__(self, fail=None):
        self.state: dict[object, int] = {}
        self.applied = Counter()
        self.fail = fail or (lambda payload, attempt: False)
        self.attempts = Counter()
        self.lock = threading.Lock()

    def __call__(self, payloads):
        outcomes = []
        with self.lock:
            for payload in payloads:
                pk = payload.instance_pk
                self.attempts[pk] += 1
                if self.fail(payload, self.attempts[pk]):
                    outcomes.append(Outcome.retry(reason="simulated database error"))
                    continue
                revision = payload.instance_data["cqrs_revision"]
                self.applied[pk, revision] += 1
                if revision > self.state.get(pk, -1):
                    self.state[pk] = revision
                outcomes.append(Outcome.applied())
        return outcomes

    def duplicates(self) -> int:
        return sum(count - 1 for count in self.applied.values())


@pytest.fixture
def vhost_path(rabbit_vhost):
    return quote(rabbit_vhost, safe="")


@pytest.fixture
def options(rabbit_url, cleanup):
    queue, exchange = unique_name("replica"), unique_name("x")
    cleanup(queue=queue, exchange=exchange)
    return {"url": rabbit_url, "queue": queue, "exchange": exchange, "rabbitmq": dict(FAST)}


def via(proxy, options, vhost_path, password="guest"):
    return dict(options, url=f"amqp://guest:{password}@127.0.0.1:{proxy.port}/{vhost_path}")


def run_consumer(transport, handler, until, timeout=30.0):
    thread = threading.Thread(
        target=transport.consume, args=(handler,), kwargs={"cqrs_ids": IDS}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not until() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let late duplicates show up
    finally:
        transport.stop()
        thread.join(15)
    assert not thread.is_alive(), "consume() did not return after stop()"


def master_events(count: int, revisions: int = 2):
    """`count` rows, each saved `revisions` times (revision 0, 1, ...)."""
    return [
        make_payload(pk, revision=rev) for rev in range(revisions) for pk in range(1, count + 1)
    ]


def test_publish_while_broker_unreachable_fails_fast_then_recovers(
    rabbit_address, tcp_proxy, options, vhost_path
):
    """A down broker gives a PublishError within publish_timeout; after it is back, publishing works."""
    proxy = tcp_proxy(*rabbit_address)
    with RabbitMQTransport(options) as replica:
        replica.declare(IDS)
    producer = RabbitMQTransport(via(proxy, options, vhost_path))
    producer.produce(make_payload(1))
    proxy.refuse()
    started = time.monotonic()
    with pytest.raises(PublishError) as raised:
        producer.produce(make_payload(2))
    elapsed = time.monotonic() - started
    assert elapsed < FAST["publish_timeout"] + 5, f"publish hung for {elapsed:.1f} s"
    assert "Could not publish" in str(raised.value)
    proxy.accept()
    producer.produce(make_payload(3))
    producer.close()
    with RabbitMQTransport(options) as replica:
        got = Replica()
        run_consumer(replica, got, lambda: len(got.state) >= 2, timeout=10)
    assert sorted(got.state) == [1, 3]


def test_unroutable_message_is_an_error(options):
    """With no replica queue bound, `mandatory` turns a silent drop into PublishError."""
    with RabbitMQTransport(options) as producer:
        with pytest.raises(PublishError, match="unroutable"):
            producer.produce(make_payload(1, cqrs_id="nobody_listens"))
        producer.declare(IDS)
        producer.produce(make_payload(2))  # the channel is still usable afterwards


def test_password_never_in_errors_or_logs(rabbit_address, tcp_proxy, options, vhost_path, caplog):
    """A wrong password gives a clear error that does not contain the password."""
    secret = "S3cret-Pa55-" + unique_name("pw")
    caplog.set_level(logging.DEBUG)
    proxy = tcp_proxy(*rabbit_address)
    producer = RabbitMQTransport(via(proxy, options, vhost_path, password=secret))
    assert secret not in producer.settings.display_url
    with pytest.raises(ConfigurationError) as raised:
        producer.produce(make_payload(1))
    assert "password" in str(raised.value)
    proxy.refuse()
    with pytest.raises(PublishError) as unreachable:
        producer.produce(make_payload(1))
    for text in (str(raised.value), str(unreachable.value), caplog.text, repr(producer.settings)):
        assert secret not in text
    producer.close()


def test_producer_reconnects_after_connection_cut(rabbit_address, tcp_proxy, options, vhost_path):
    """A cut connection is noticed and replaced on the next publish; nothing is lost."""
    proxy = tcp_proxy(*rabbit_address)
    with RabbitMQTransport(options) as replica:
        replica.declare(IDS)
        producer = RabbitMQTransport(via(proxy, options, vhost_path))
        producer.produce_many([make_payload(pk) for pk in range(1, 6)])
        proxy.cut()
        producer.produce_many([make_payload(pk) for pk in range(6, 11)])
        producer.close()
        assert proxy.connections == 2
        got = Replica()
        run_consumer(replica, got, lambda: len(got.state) >= 10, timeout=10)
    assert sorted(got.state) == list(range(1, 11))


def test_consumer_connection_cut_mid_batch_loses_nothing(
    rabbit_address, tcp_proxy, options, vhost_path
):
    """The broker link drops while a batch is being applied, and stays down for a moment.

    The consumer reconnects by itself; the unacked batch is delivered again (duplicates),
    nothing is lost, and the replica ends up equal to the master.
    """
    proxy = tcp_proxy(*rabbit_address)
    events = master_events(60)
    with RabbitMQTransport(options) as producer:
        producer.declare(IDS)
        producer.produce_many(events)
    replica = Replica()
    cut_once = threading.Event()

    def handler(payloads):
        outcomes = replica(payloads)
        if sum(replica.applied.values()) >= 30 and not cut_once.is_set():
            cut_once.set()
            proxy.refuse()  # cut now: this batch's acks cannot reach the broker
            threading.Timer(1.0, proxy.accept).start()
        return outcomes

    consumer = RabbitMQTransport(via(proxy, options, vhost_path))
    expected = {pk: 1 for pk in range(1, 61)}
    run_consumer(consumer, handler, lambda: replica.state == expected)
    lost = sum(1 for pk in expected if replica.state.get(pk) != expected[pk])
    print(
        f"cut mid-batch: lost={lost} duplicates={replica.duplicates()} "
        f"reconnects={consumer.last_consumer.reconnects}"
    )
    assert lost == 0
    assert replica.state == expected
    assert consumer.last_consumer.reconnects >= 1
    assert replica.duplicates() >= 1  # the cut batch was applied and then delivered again
    consumer.close()


def test_handler_failing_n_times_then_succeeding(options):
    """A row that fails three times is retried through the delay queue, then applied once."""
    options = dict(options, replica={"CQRS_RETRY_DELAY": 0.1, "CQRS_MAX_RETRIES": 5})
    replica = Replica(fail=lambda payload, attempt: payload.instance_pk == 3 and attempt <= 3)
    seen_retries = []
    with RabbitMQTransport(options) as transport:
        transport.declare(IDS)
        transport.produce_many([make_payload(pk) for pk in range(1, 6)])

        def handler(payloads):
            seen_retries.extend(p.retries for p in payloads if p.instance_pk == 3)
            return replica(payloads)

        run_consumer(transport, handler, lambda: len(replica.state) >= 5)
        assert transport.dead_letters() == []
    assert seen_retries == [0, 1, 2, 3]
    assert replica.applied == {(pk, 0): 1 for pk in range(1, 6)}


def test_poison_messages_do_not_stop_the_consumer(options):
    """Malformed bodies and a row that always fails end as dead letters; the rest applies."""
    options = dict(options, replica={"CQRS_RETRY_DELAY": 0.05, "CQRS_MAX_RETRIES": 2})
    replica = Replica(fail=lambda payload, attempt: payload.instance_pk == 2)
    with RabbitMQTransport(options) as transport:
        transport.declare(IDS)
        transport.produce(make_payload(1))
        from cqrs_core.messages import Outgoing

        transport._publish([Outgoing(body=b"\xff not json", cqrs_id=IDS[0])])
        transport.produce_many([make_payload(2), make_payload(3)])
        run_consumer(
            transport,
            replica,
            lambda: len(replica.state) >= 2 and len(transport.dead_letters()) >= 2,
        )
        letters = transport.dead_letters()
        reasons = sorted(letter.reason.split(":")[0] for letter in letters)
        assert reasons == ["malformed message", "retries exhausted (2)"]
        assert sorted(replica.state) == [1, 3]
        # the dead letters can be sent back, and purged
        assert transport.purge_dead_letters() == 2
        assert transport.dead_letters() == []


def test_duplicates_are_delivered_and_harmless(options):
    """The same event twice (a master retrying a publish) reaches the handler twice; the
    revision check keeps the state right."""
    with RabbitMQTransport(options) as transport:
        transport.declare(IDS)
        transport.produce_many(
            [make_payload(1, revision=1), make_payload(1, revision=1), make_payload(1, revision=0)]
        )
        replica = Replica()
        run_consumer(transport, replica, lambda: sum(replica.applied.values()) >= 3)
    assert replica.applied == {(1, 1): 2, (1, 0): 1} and replica.duplicates() == 1
    assert replica.state == {1: 1}


CHILD = textwrap.dedent(
    """
    import sys, time
    from cqrs_core.messages import Outcome
    from cqrs_rabbitmq import RabbitMQTransport
    options = eval(sys.argv[1])
    out = open(sys.argv[2], "a", buffering=1)

    def handler(payloads):
        for p in payloads:
            out.write(f"{p.instance_pk}\\n")
        time.sleep(0.5)  # a slow database commit: SIGKILL lands here
        return [Outcome.applied()] * len(payloads)

    RabbitMQTransport(options).consume(handler, cqrs_ids=["conformance_a"])
    """
)


def test_consumer_killed_with_sigkill_mid_batch(options, tmp_path):
    """A worker SIGKILLed while applying a batch loses nothing: a restarted one gets it again."""
    options = dict(options, consumer_prefetch_count=20, replica={"batch_size": 20})
    with RabbitMQTransport(options) as producer:
        producer.declare(IDS)
        producer.produce_many([make_payload(pk) for pk in range(1, 101)])
    log = tmp_path / "applied.txt"
    log.touch()

    def applied():
        return [int(line) for line in log.read_text().split()]

    def start():
        return subprocess.Popen([sys.executable, "-c", CHILD, repr(options), str(log)])

    child = start()
    try:
        deadline = time.monotonic() + 20
        while len(applied()) < 30 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        killed_at = len(applied())
        child = start()
        deadline = time.monotonic() + 30
        while set(applied()) != set(range(1, 101)) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        child.terminate()
        child.wait(10)
    seen = Counter(applied())
    lost = sorted(set(range(1, 101)) - set(seen))
    duplicates = sum(n - 1 for n in seen.values())
    print(
        f"SIGKILL mid-batch after {killed_at} applications: lost={len(lost)} "
        f"duplicates={duplicates}"
    )
    assert lost == []
    assert duplicates >= 1  # the killed batch had been written but not acked


def test_queue_deleted_under_the_consumer_is_recreated(options, amqp):
    """If an operator deletes the queue, the consumer re-declares it and keeps consuming."""
    with RabbitMQTransport(options) as transport:
        transport.declare(IDS)
        replica = Replica()
        deleted = threading.Event()

        def until():
            if not deleted.is_set() and transport.last_consumer is not None:
                time.sleep(0.5)  # let the consumer settle in, then pull the rug
                amqp.queue_delete(options["queue"])
                deleted.set()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        transport.produce(make_payload(1))
                        break
                    except PublishError:  # unroutable until the consumer re-declared
                        time.sleep(0.2)
            return bool(replica.state)

        run_consumer(transport, replica, until, timeout=20)
        assert replica.state == {1: 0}
        assert transport.last_consumer.reconnects >= 1


_FORK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from cqrs_core.testing.suite import make_payload
    from cqrs_rabbitmq import RabbitMQTransport

    with RabbitMQTransport(json.loads(sys.argv[1])) as transport:
        transport.declare(("conformance_a",))
        transport.produce(make_payload(1))
        pid = os.fork()
        if pid == 0:  # child: exit code 0 only if its publish was confirmed
            code = 1
            try:
                transport.produce(make_payload(2))
                transport.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        transport.produce(make_payload(3))  # the parent's connection still works
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_its_own_connection(options):
    """After fork() the child opens its own connection and leaves the parent's alone.

    It forks a fresh interpreter, not the test runner: forking a process that holds other
    libraries' background threads (librdkafka's) is unsafe whatever the transport does.
    """
    import json

    result = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT, json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with RabbitMQTransport(options) as transport:
        replica = Replica()
        run_consumer(transport, replica, lambda: len(replica.state) >= 3, timeout=10)
    assert sorted(replica.state) == [1, 2, 3]
