"""The outbox in operation on the real broker (issues 14 and 15): no double sends in bursts, no
jam behind a refused event, no endless `--once`, no "database is locked" on SQLite masters, and
admin actions behind the change permission.

Run on SQLite (default) and PostgreSQL (CQRS_TEST_DB=postgres); RabbitMQ at 127.0.0.1:5672.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cqrs_testproject.master_app.models import Author
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from cqrs_core.testing.plugin import service_unavailable
from dj_cqrs import conf
from dj_cqrs.outbox import background_publisher, routing
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.relay import Relay
from dj_cqrs.outbox.settings import outbox_settings

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

HOST = os.environ.get("CQRS_TEST_RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("CQRS_TEST_RABBITMQ_PORT", "5672"))
TESTS = Path(__file__).parent
EXCHANGE = "cqrs_ops"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    from cqrs_rabbitmq.testing import required_vhost

    with required_vhost("cqrs_ops", HOST, PORT) as name:
        yield name


class Rabbit:
    """A vhost with the replica queue of `author` declared, and a spy queue bound with `#`."""

    def __init__(self, vhost: str) -> None:
        self.url = f"amqp://guest:guest@{HOST}:{PORT}/{quote(vhost, safe='')}"
        self.queue = f"replica_{uuid.uuid4().hex[:8]}"
        self.spy = f"spy_{uuid.uuid4().hex[:8]}"

    def cqrs(self, **outbox: Any) -> dict[str, Any]:
        return {
            "transport": "rabbitmq",
            "url": self.url,
            "exchange": EXCHANGE,
            "queue": self.queue,
            "master": {"CQRS_MESSAGE_TTL": 86400, "outbox": outbox},
        }

    def _channel(self) -> Any:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        return connection, connection.channel()

    def declare(self) -> None:
        from cqrs_rabbitmq import RabbitMQTransport

        with RabbitMQTransport(self.cqrs()) as transport:
            transport.declare(["author"])

    def bind_spy(self) -> None:
        connection, channel = self._channel()
        try:
            channel.queue_declare(self.spy, durable=False, auto_delete=False)
            channel.queue_bind(self.spy, EXCHANGE, routing_key="#")
        finally:
            connection.close()

    def drop_spy(self) -> None:
        connection, channel = self._channel()
        try:
            channel.queue_delete(self.spy)
        finally:
            connection.close()

    def depth(self, queue: str) -> int:
        connection, channel = self._channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.message_count)
        finally:
            connection.close()

    def settled_depth(self, queue: str, *, quiet: float = 3.0, timeout: float = 300.0) -> int:
        """The depth of `queue` once it has not changed for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            depth = self.depth(queue)
            if depth != last:
                last, since = depth, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return depth
            time.sleep(0.2)
        raise AssertionError(f"{queue} kept changing for {timeout}s")

    def bodies(self, queue: str) -> list[dict[str, Any]]:
        connection, channel = self._channel()
        found = []
        try:
            while True:
                method, _props, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return found
                found.append(json.loads(body))
        finally:
            connection.close()


@pytest.fixture
def rabbit(vhost: str, settings: Any) -> Iterator[Rabbit]:
    env = Rabbit(vhost)
    env.declare()
    settings.CQRS = env.cqrs()
    background_publisher.resume()
    routing.forget()
    try:
        yield env
    finally:
        env.drop_spy()  # bound with `#`, it would make every later message routable
        background_publisher.flush(30)
        background_publisher.resume()
        conf.reset_transport()


def subprocess_env(rabbit: Rabbit, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "DJANGO_SETTINGS_MODULE": "cqrs_testproject.settings",
        "CQRS_TEST_DB_NAME": connections["default"].settings_dict["NAME"],
        "CQRS_TEST_TRANSPORT": "rabbitmq",
        "CQRS_TEST_URL": rabbit.url,
        "CQRS_TEST_QUEUE": rabbit.queue,
        **extra,
    }


# -- issue 14 item 11: a burst is published once ------------------------------------------------


def test_a_burst_published_while_a_relay_runs_reaches_the_broker_once(
    rabbit: Rabbit, settings: Any
) -> None:
    count = 5000
    Author.cqrs.bulk_create([Author(name="v0") for _ in range(count)])
    assert background_publisher.flush(300)
    wait_for(lambda: not OutboxEvent.objects.exists(), 120, "the creations to be sent")
    rabbit.bind_spy()
    relay = subprocess.Popen(
        [sys.executable, "-m", "django", "cqrs_relay", "--grace", "0.2", "-v", "2"],
        env=subprocess_env(rabbit, CQRS_TEST_SETTINGS=json.dumps({"exchange": EXCHANGE})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The relay is up once it sent a row nobody claims (written with the fast path off).
        settings.CQRS = rabbit.cqrs(fast_path=False)
        Author.objects.create(name="canary")
        wait_for(lambda: rabbit.depth(rabbit.spy) == 1, 120, "the relay to send the canary")
        settings.CQRS = rabbit.cqrs()
        updated = Author.cqrs.bulk_update(Author.objects.exclude(name="canary"), name="burst")
        assert updated == count
        assert background_publisher.flush(300)
        wait_for(
            lambda: not OutboxEvent.objects.filter(sent_at__isnull=True).exists(),
            300,
            "the outbox to empty",
        )
        on_broker = rabbit.settled_depth(rabbit.spy)
    finally:
        relay.terminate()
        out, _ = relay.communicate(timeout=60)
    print(f"burst of {count} events: {on_broker - 1} messages on the broker")
    assert on_broker == count + 1, out[-2000:]


def test_cqrs_relay_says_where_it_publishes_without_the_password(rabbit: Rabbit) -> None:
    from dj_cqrs.management.commands.cqrs_relay import banner, mask_url

    assert mask_url("amqp://user:secret@host:5672/v") == "amqp://user:***@host:5672/v"
    text = banner("default", once=True)
    assert "transport rabbitmq" in text and f"exchange {EXCHANGE}" in text
    assert "guest:***@" in text and "guest:guest" not in text


# -- issue 15 item 1: one refused event holds back nothing --------------------------------------


def test_a_refused_event_is_set_aside_and_the_rest_goes_out_once(
    rabbit: Rabbit, settings: Any
) -> None:
    settings.CQRS = rabbit.cqrs(fast_path=False, grace=0.0)
    before = [Author.objects.create(name=f"b{i}") for i in range(5)]
    Author.objects.get(pk=before[0].pk).cqrs_sync(queue="nosuchqueue")  # a typo
    after = [Author.objects.create(name=f"a{i}") for i in range(5)]
    relay = Relay(settings=outbox_settings())
    deadline = time.monotonic() + 120
    while OutboxEvent.objects.filter(sent_at__isnull=True, set_aside_at__isnull=True).exists():
        assert time.monotonic() < deadline, "the relay is stuck"
        relay.run_once()
    aside = OutboxEvent.objects.get()
    assert aside.set_aside_at is not None and aside.queue == "nosuchqueue"
    assert "NO_ROUTE" in aside.last_error or "unroutable" in aside.last_error
    got = rabbit.bodies(rabbit.queue)  # each good event once, in spite of the refused one
    assert sorted(b["instance_pk"] for b in got) == sorted(a.pk for a in before + after)

    out = _call("cqrs_outbox")
    assert "Set aside (refused by the broker): 1" in out
    assert f"{aside.id}\tSYNC\tauthor:{before[0].pk}\tqueue=nosuchqueue" in _call(
        "cqrs_outbox", "set-aside"
    )
    assert "1 set-aside event(s) put back" in _call("cqrs_outbox", "retry", "--all")
    relay.run_once()  # still unroutable: set aside again, nothing else sent
    assert OutboxEvent.objects.get().set_aside_at is not None
    assert "Dropped 1 unsent" in _call("cqrs_outbox", "drop", str(aside.id))
    assert not OutboxEvent.objects.exists()


def test_cqrs_sync_to_an_unknown_queue_fails_and_stores_nothing(rabbit: Rabbit) -> None:
    Author.objects.create(name="x")
    assert background_publisher.flush(60)
    wait_for(lambda: not OutboxEvent.objects.exists(), 60, "the creation to be sent")
    with pytest.raises(CommandError, match="nosuchqueue"):
        call_command("cqrs_sync", "--cqrs-id", "author", "-q", "nosuchqueue")
    assert not OutboxEvent.objects.exists()


def _call(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# -- issue 15 item 2: `--once` gives up --------------------------------------------------------


def test_relay_once_exits_non_zero_when_the_broker_is_unreachable(settings: Any) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CQRS = {
        "transport": "rabbitmq",
        "url": f"amqp://guest:guest@127.0.0.1:{port}/",
        "queue": "replica",
        "rabbitmq": {"connection_timeout": 1},
        "master": {"outbox": {"fast_path": False, "grace": 0.0}},
    }
    Author.objects.create(name="stuck")
    started = time.monotonic()
    with pytest.raises(CommandError, match="still pending"):
        call_command("cqrs_relay", "--once", "--timeout", "3", verbosity=0)
    assert time.monotonic() - started < 60
    assert OutboxEvent.objects.filter(sent_at__isnull=True).count() == 1
    conf.reset_transport()


# -- issue 14 item 3: admin actions need the change permission ----------------------------------


def _staff(username: str, *codenames: str) -> Any:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_admin_actions_need_the_change_permission(client: Any, settings: Any) -> None:
    from cqrs_testproject.master_app.testing import RecordingTransport  # noqa: F401

    settings.CQRS = {
        "transport": "cqrs_testproject.master_app.testing.RecordingTransport",
        "queue": "replica",
        "master": {"outbox": {"fast_path": False, "keep_days": 1}},
    }
    Author.objects.create(name="a")
    row = OutboxEvent.objects.get()
    url = "/admin/dj_cqrs/outboxevent/"
    data = {"action": "publish_again", "_selected_action": [row.id]}

    client.force_login(_staff("viewer", "view_outboxevent"))
    page = client.get(url)
    assert page.status_code == 200
    assert b"publish_again" not in page.content
    client.post(url, data)
    row.refresh_from_db()
    assert row.sent_at is None  # not sent by a view-only user

    client.force_login(_staff("editor", "view_outboxevent", "change_outboxevent"))
    assert b"publish_again" in client.get(url).content
    client.post(url, data)
    row.refresh_from_db()
    assert row.sent_at is not None


def test_admin_does_not_resend_a_delete_of_a_row_that_exists_again(
    client: Any, settings: Any
) -> None:
    settings.CQRS = {
        "transport": "cqrs_testproject.master_app.testing.RecordingTransport",
        "queue": "replica",
        "master": {"outbox": {"fast_path": False, "keep_days": 1}},
    }
    author = Author.objects.create(name="a")
    pk = author.pk
    author.delete()
    Author.objects.create(pk=pk, name="back")
    delete = OutboxEvent.objects.get(signal_type="DELETE")
    client.force_login(_staff("editor2", "view_outboxevent", "change_outboxevent"))
    client.post(
        "/admin/dj_cqrs/outboxevent/",
        {"action": "publish_again", "_selected_action": [delete.id]},
    )
    delete.refresh_from_db()
    assert delete.sent_at is None


# -- issue 14 item 9: a 3.x-style SQLite master sees no "database is locked" --------------------

SQLITE_MASTER = r"""
import json, sys, threading, time
import django
django.setup()
from django.core.management import call_command
from django.db import OperationalError, connections, transaction
from cqrs_testproject.master_app.models import Author
from dj_cqrs.outbox import background_publisher
from dj_cqrs.outbox.models import OutboxEvent

call_command("migrate", run_syncdb=True, verbosity=0)
authors = [Author.objects.create(name="v0").pk for _ in range(20)]
one_at_a_time = threading.Lock()  # user transactions never meet each other, only our publisher
errors, done = [], [0]

def work(worker):
    for i in range(ROUNDS):
        pk = authors[(worker * 7 + i) % len(authors)]
        with one_at_a_time:
            try:
                with transaction.atomic():  # deferred: reads, then upgrades to a write lock
                    author = Author.objects.get(pk=pk)
                    sum(1 for _ in range(2000))  # the request's own work between read and write
                    author.name = f"w{worker}-{i}"
                    author.save()
                done[0] += 1
            except OperationalError as exc:
                errors.append(str(exc))
    connections.close_all()

threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
background_publisher.flush(60)
print(json.dumps({"errors": errors[:5], "failed": len(errors), "done": done[0],
                  "pending": OutboxEvent.objects.filter(sent_at__isnull=True).count()}))
"""


def test_a_default_sqlite_master_never_sees_database_is_locked(
    rabbit: Rabbit, tmp_path: Path
) -> None:
    rounds = 150
    env = subprocess_env(
        rabbit,
        CQRS_TEST_DB="sqlite",
        CQRS_TEST_DB_NAME=str(tmp_path / "master.sqlite3"),
        CQRS_TEST_SQLITE_TRANSACTION_MODE="",
        CQRS_TEST_SETTINGS=json.dumps({"exchange": EXCHANGE}),
    )
    rabbit.bind_spy()
    done = subprocess.run(
        [sys.executable, "-c", SQLITE_MASTER.replace("ROUNDS", str(rounds))],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failed"] == 0, result
    assert result["done"] == 4 * rounds and result["pending"] == 0
    assert rabbit.settled_depth(rabbit.spy) == 20 + 4 * rounds  # the creations, the saves


# -- issue 15 item 1 on Kafka: a directed SYNC has no route to miss ------------------------------


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    pytest.importorskip("confluent_kafka")
    from cqrs_kafka.testing import kafka_bootstrap as bootstrap

    try:
        context = bootstrap()
        servers = context.__enter__()
    except Exception as exc:  # noqa: BLE001 - any failure means no broker
        service_unavailable("Kafka (tansu)", exc)
    try:
        yield servers
    finally:
        context.__exit__(None, None, None)


def test_kafka_relay_sends_a_sync_for_an_unknown_queue_and_jams_nothing(
    kafka_bootstrap: str, settings: Any
) -> None:
    """On Kafka a directed SYNC goes to the topic of its CQRS_ID with the queue in a header:
    the broker cannot refuse it (replicas of other queues skip it), so it is sent, not set
    aside, and the events around it go out once."""
    from cqrs_core.testing.consuming import Recorder, consume_until
    from cqrs_kafka.testing import FAST_CONSUMER, cleanup

    tag = uuid.uuid4().hex[:8]
    cqrs = {
        "transport": "kafka",
        "bootstrap_servers": kafka_bootstrap,
        "exchange": f"ops{tag}",
        "queue": f"replica{tag}",
        "kafka": {"partitions": 1, "replication_factor": 1, "consumer": dict(FAST_CONSUMER)},
        "master": {"outbox": {"fast_path": False, "grace": 0.0}},
    }
    settings.CQRS = cqrs
    try:
        from cqrs_kafka import KafkaTransport

        with KafkaTransport(cqrs) as transport:
            transport.declare(["author"])
        before = [Author.objects.create(name=f"b{i}") for i in range(5)]
        Author.objects.get(pk=before[0].pk).cqrs_sync(queue="nosuchqueue")
        after = [Author.objects.create(name=f"a{i}") for i in range(5)]
        assert Relay(settings=outbox_settings()).run(until_empty=True) == 11
        assert not OutboxEvent.objects.exists()  # all sent, none set aside
        recorder = Recorder()
        with KafkaTransport(cqrs) as transport:
            consume_until(
                transport,
                recorder,
                lambda: recorder.count() >= 10,
                cqrs_ids=["author"],
                timeout=120,
                settle=3,
            )
        assert sorted(recorder.pks()) == sorted(a.pk for a in before + after)
    finally:
        conf.reset_transport()
        cleanup(kafka_bootstrap, f"ops{tag}.", [f"replica{tag}"])
