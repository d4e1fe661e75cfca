"""The outbox against the real RabbitMQ, with a TCP proxy playing the broker outage.

Events are read back from the replica queue with a RabbitMQ transport that does not go through
the proxy. Run on SQLite (default) and PostgreSQL (CQRS_TEST_DB=postgres).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cqrs_testproject.master_app.models import Author
from django.db import connections, transaction

from cqrs_core.testing._consuming import Recorder, consume_until
from cqrs_core.testing.proxy import TcpProxy
from dj_cqrs import conf
from dj_cqrs.outbox import background_publisher
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.relay import Relay
from dj_cqrs.outbox.settings import outbox_settings

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

HOST = os.environ.get("CQRS_TEST_RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("CQRS_TEST_RABBITMQ_PORT", "5672"))
TESTS = Path(__file__).parent
TUNING = {
    "connection_timeout": 1,
    "publish_timeout": 2,
    "reconnect_delay": 0.1,
    "reconnect_max_delay": 0.5,
}


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    from cqrs_rabbitmq.testing import required_vhost

    with required_vhost("cqrs_outbox", HOST, PORT) as name:
        yield name


class Broker:
    """The master talks to RabbitMQ through `proxy`; `read` consumes the replica queue directly."""

    def __init__(self, vhost: str, proxy: TcpProxy, queue: str) -> None:
        path = quote(vhost, safe="")
        self.direct_url = f"amqp://guest:guest@{HOST}:{PORT}/{path}"
        self.proxy_url = f"amqp://guest:guest@{proxy.host}:{proxy.port}/{path}"
        self.proxy = proxy
        self.queue = queue

    def cqrs(self, *, url: str, **master: Any) -> dict[str, Any]:
        return {
            "transport": "rabbitmq",
            "url": url,
            "queue": self.queue,
            "rabbitmq": TUNING,
            "master": {"CQRS_MESSAGE_TTL": 86400, **master},
        }

    def consumer(self) -> Any:
        from cqrs_rabbitmq import RabbitMQTransport

        return RabbitMQTransport(self.cqrs(url=self.direct_url))

    def read(self, count: int, *, settle: float = 1.0, timeout: float = 120.0) -> Recorder:
        """Consume until `count` events arrived, then `settle` seconds more (to see extras)."""
        recorder = Recorder()
        with self.consumer() as transport:
            consume_until(
                transport,
                recorder,
                lambda: recorder.count() >= count,
                cqrs_ids=["author"],
                timeout=timeout,
                settle=settle,
            )
        return recorder


@pytest.fixture
def broker(vhost: str, settings: Any) -> Iterator[Broker]:
    with TcpProxy(HOST, PORT) as proxy:
        env = Broker(vhost, proxy, f"replica_{uuid.uuid4().hex[:8]}")
        with env.consumer() as transport:
            transport.declare(["author"])
        settings.CQRS = env.cqrs(url=env.proxy_url, outbox={"grace": 2.0})
        background_publisher.resume()
        try:
            yield env
        finally:
            background_publisher.resume()
            conf.reset_transport()


class SaveOrder:
    """`correlation_function`: a number taken at each save. The instance data (and the meta) are
    serialized when the event is sent, so this shows the order of the events of a row."""

    def __init__(self) -> None:
        self.counter = itertools.count()

    def __call__(self, *args: Any) -> int:
        return next(self.counter)


def with_save_order(settings: Any) -> None:
    master = {**settings.CQRS["master"], "correlation_function": SaveOrder()}
    settings.CQRS = {**settings.CQRS, "master": master}


def in_save_order(recorder: Recorder) -> bool:
    seen: dict[Any, list[int]] = {}
    for payload in recorder.payloads:
        seen.setdefault(payload.instance_pk, []).append(payload.correlation_id)
    return all(numbers == sorted(numbers) for numbers in seen.values())


def revisions_by_row(recorder: Recorder) -> dict[Any, list[int]]:
    seen: dict[Any, list[int]] = {}
    for payload in recorder.payloads:
        seen.setdefault(payload.instance_pk, []).append(payload.instance_data["cqrs_revision"])
    return seen


def test_1000_saves_while_the_broker_is_unreachable_all_arrive_in_order(
    broker: Broker, settings: Any
) -> None:
    with_save_order(settings)
    authors = [Author.objects.create(name="v0") for _ in range(100)]
    broker.read(100)  # the creations went out on the fast path
    broker.proxy.refuse()
    for round_ in range(1, 11):
        for author in authors:
            author.name = f"v{round_}"
            author.save()  # never raises, never waits for the broker
    assert background_publisher.flush(120)  # the publisher has tried and left them to the relay
    assert OutboxEvent.objects.filter(sent_at__isnull=True).count() == 1000
    broker.proxy.accept()
    relay = Relay(settings=outbox_settings())
    assert relay.run(until_empty=True) == 1000
    got = broker.read(1000)
    assert got.count() == 1000
    assert in_save_order(got)
    # Serialized when sent: every event carries the committed state (replicas apply it once).
    assert revisions_by_row(got) == {a.pk: [10] * 10 for a in authors}
    assert not OutboxEvent.objects.exists()


def test_relay_backs_off_while_the_broker_is_down_then_sends(broker: Broker) -> None:
    broker.proxy.refuse()
    authors = [Author.objects.create(name=f"a{i}") for i in range(20)]
    relay = Relay(settings=outbox_settings())
    done = threading.Event()

    def run() -> None:
        try:
            relay.run(until_empty=True)
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while relay.failures < 2 and not done.is_set():
            done.wait(0.1)
        assert relay.failures >= 2 and relay.sent == 0  # backing off, nothing lost
        broker.proxy.accept()
        assert done.wait(60)
    finally:
        relay.stop()
        thread.join(10)
    got = broker.read(20)
    assert sorted(p.instance_pk for p in got.payloads) == sorted(a.pk for a in authors)


def test_master_killed_between_commit_and_publish_the_relay_sends(broker: Broker) -> None:
    script = (
        "import os, signal\n"
        "from django.db import transaction\n"
        "from cqrs_testproject.master_app.models import Author\n"
        "with transaction.atomic():\n"
        "    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))\n"
        "    print(Author.objects.create(name='killed').pk, flush=True)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "DJANGO_SETTINGS_MODULE": "cqrs_testproject.settings",
        "CQRS_TEST_DB_NAME": connections["default"].settings_dict["NAME"],
        "CQRS_TEST_TRANSPORT": "rabbitmq",
        "CQRS_TEST_URL": broker.proxy_url,
        "CQRS_TEST_QUEUE": broker.queue,
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr
    pk = int(done.stdout.split()[-1])
    assert Author.objects.filter(pk=pk).exists()
    row = OutboxEvent.objects.get()
    assert row.sent_at is None and row.instance_pk == str(pk)
    assert Relay(settings=outbox_settings()).run(until_empty=True) == 1
    got = broker.read(1)
    assert [p.instance_pk for p in got.payloads] == [pk]


def test_two_relays_at_once_send_each_event_once_in_order(broker: Broker, settings: Any) -> None:
    settings.CQRS = {
        **settings.CQRS,
        "master": {**settings.CQRS["master"], "outbox": {"fast_path": False, "batch_size": 25}},
    }
    with_save_order(settings)
    authors = [Author.objects.create(name="r0") for _ in range(30)]
    for round_ in range(1, 10):
        for author in authors:
            author.name = f"r{round_}"
            author.save()
    assert OutboxEvent.objects.count() == 300
    relays = [Relay(settings=outbox_settings()) for _ in range(2)]
    start = threading.Barrier(2)

    def run(relay: Relay) -> None:
        try:
            start.wait()
            relay.run(until_empty=True)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(r.sent for r in relays) == 300
    got = broker.read(300, settle=2.0)
    assert got.count() == 300  # no duplicates
    assert in_save_order(got)
    assert revisions_by_row(got) == {a.pk: [9] * 10 for a in authors}


def test_rolled_back_transaction_sends_nothing(broker: Broker) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Author.objects.create(name="never")
        raise RuntimeError
    kept = Author.objects.create(name="kept")
    got = broker.read(1, settle=1.5)
    assert [p.instance_pk for p in got.payloads] == [kept.pk]
    assert not OutboxEvent.objects.exists()
