"""`cqrs_consume` in production, against the real RabbitMQ: probes, SIGTERM drain, restarts.

Each test module run gets a fresh RabbitMQ virtual host (deleted at the end) and each test its
own exchange and queue. The consumers are real `manage.py cqrs_consume` processes sharing the
test database; `TallyRef` logs every committed apply in `ApplyLog` and, with
CQRS_TEST_APPLY_DELAY, records each apply it starts and then sleeps (slow batches).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import django
import pika
import pytest
from cqrs_testproject.replica_app.models import ApplyLog
from replica_support import ConsumeProcess, data, payload

from cqrs_rabbitmq import RabbitMQTransport

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.broker("rabbitmq")]

HOST = os.environ.get("CQRS_TEST_RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("CQRS_TEST_RABBITMQ_PORT", "5672"))
READY = re.compile(r"worker (\d+) ready for ")
WAIT = 60.0
"""Upper bound for anything to happen (a hang guard, never a speed assertion)."""


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    from cqrs_rabbitmq.testing import required_vhost

    with required_vhost("cqrs_ops", HOST, PORT) as name:
        yield name


class Broker:
    """The settings one test's consumers and publisher share, plus helpers to inspect them."""

    def __init__(self, vhost: str, tmp_path: Path) -> None:
        self.vhost = vhost
        tag = uuid.uuid4().hex[:10]
        self.queue = f"replica_{tag}"
        self.exchange = f"cqrs_{tag}"
        self.attempts = tmp_path / "attempts"
        self.attempts.mkdir()
        self.replica: dict[str, Any] = {"batch_size": 4, "batch_timeout": 0.3}

    def url(self, port: int = PORT) -> str:
        return f"amqp://guest:guest@{HOST}:{port}/{quote(self.vhost, safe='')}"

    def env(self, *, port: int = PORT, delay: float = 0.0) -> dict[str, str]:
        extra = {
            "exchange": self.exchange,
            "consumer_prefetch_count": 4,
            "replica": self.replica,
            "rabbitmq": {"reconnect_delay": 0.2, "reconnect_max_delay": 1},
        }
        env = {
            "CQRS_TEST_TRANSPORT": "rabbitmq",
            "CQRS_TEST_URL": self.url(port),
            "CQRS_TEST_QUEUE": self.queue,
            "CQRS_TEST_SETTINGS": json.dumps(extra),
            "CQRS_TEST_ATTEMPTS_DIR": str(self.attempts),
            "CQRS_TEST_APPLY_DELAY": str(delay),
        }
        if django.VERSION >= (5, 1):
            # SQLite: workers queue for the write lock instead of failing with "locked".
            env["CQRS_TEST_SQLITE_TRANSACTION_MODE"] = "IMMEDIATE"
        return env

    def publish(self, pks: range) -> None:
        """Send one SAVE of `tally` row `pk` (revision 0) per pk."""
        transport = RabbitMQTransport({"url": self.url(), "exchange": self.exchange})
        try:
            transport.produce_many(
                payload("tally", data(pk, 0, pk, name=f"t{pk}", value=pk)) for pk in pks
            )
        finally:
            transport.close()

    def depth(self) -> int | None:
        """Messages ready in the replica queue (None: the queue does not exist)."""
        return self._queue_info()[0]

    def consumers(self) -> int | None:
        return self._queue_info()[1]

    def _queue_info(self) -> tuple[int | None, int | None]:
        connection = pika.BlockingConnection(pika.URLParameters(self.url()))
        try:
            channel = connection.channel()
            try:
                ok = channel.queue_declare(self.queue, passive=True).method
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return None, None
                raise
            return ok.message_count, ok.consumer_count
        finally:
            if connection.is_open:
                connection.close()

    def started(self) -> list[int]:
        """Ids of the `tally` applies that began (CQRS_TEST_APPLY_DELAY only)."""
        log = self.attempts / "applying.log"
        if not log.exists():
            return []
        return [int(line.split(":")[0]) for line in log.read_text().split()]


@pytest.fixture
def broker(vhost: str, tmp_path: Path) -> Broker:
    return Broker(vhost, tmp_path)


@pytest.fixture
def consumer() -> Iterator[Callable[..., ConsumeProcess]]:
    started: list[ConsumeProcess] = []

    def start(*args: str, env: dict[str, str]) -> ConsumeProcess:
        started.append(ConsumeProcess(*args, env=env))
        return started[-1]

    yield start
    for proc in started:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait(WAIT)


def eventually(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def applied() -> list[int]:
    return sorted(ApplyLog.objects.filter(cqrs_id="tally").values_list("instance_pk", flat=True))


def test_readiness_appears_only_once_bound(
    broker: Broker, consumer: Callable[..., ConsumeProcess], tcp_proxy: Any, tmp_path: Path
) -> None:
    proxy = tcp_proxy(HOST, PORT)
    proxy.refuse()
    ready_file = tmp_path / "ready"
    proc = consumer(
        "--cqrs-id", "tally", "--readiness-file", str(ready_file), env=broker.env(port=proxy.port)
    )
    proc.wait_for("Cannot connect to RabbitMQ")  # it tried, and the "broker" refused
    assert not ready_file.exists()
    assert broker.depth() is None, "the queue is not declared yet"
    proxy.accept()
    eventually(ready_file.exists, "the readiness file")
    assert broker.consumers() == 1, "readiness means declared, bound and consuming"
    broker.publish(range(1, 2))
    eventually(lambda: applied() == [1], "the message published after readiness")
    assert proc.stop() == 0
    assert not ready_file.exists(), "the readiness file is removed on exit"


@pytest.mark.parametrize("workers", [1, 2])
def test_liveness_advances_while_idle(
    broker: Broker, consumer: Callable[..., ConsumeProcess], tmp_path: Path, workers: int
) -> None:
    live = tmp_path / "alive"
    ready_file = tmp_path / "ready"
    proc = consumer(
        "-w",
        str(workers),
        "--cqrs-id",
        "tally",
        "--liveness-file",
        str(live),
        "--readiness-file",
        str(ready_file),
        env=broker.env(),
    )
    pids = [int(proc.wait_for(READY).group(1)) for _ in range(workers)]
    eventually(ready_file.exists, "the readiness file")
    eventually(live.exists, "the liveness file")
    for _ in range(3):
        before = mtime(live)
        eventually(lambda before=before: mtime(live) > before, "the liveness file to advance")
    if workers > 1:
        # One hung worker (stopped) must show: the supervisor stops touching the file.
        os.kill(pids[0], signal.SIGSTOP)
        try:
            time.sleep(1.0)  # let a tick that was already counted go by
            frozen = mtime(live)
            time.sleep(3.0)
            assert mtime(live) == frozen, "liveness must not advance while a worker hangs"
        finally:
            os.kill(pids[0], signal.SIGCONT)
        eventually(lambda: mtime(live) > frozen, "liveness to resume")
    assert proc.stop() == 0
    assert not ready_file.exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_the_slow_batch_finish_and_ack(
    broker: Broker, consumer: Callable[..., ConsumeProcess], workers: int
) -> None:
    total = 12
    proc = consumer(
        "-w",
        str(workers),
        "--cqrs-id",
        "tally",
        "--shutdown-timeout",
        str(WAIT),
        env=broker.env(delay=0.4),
    )
    for _ in range(workers):
        proc.wait_for(READY)
    broker.publish(range(1, total + 1))
    eventually(broker.started, "a slow batch to start")
    code = proc.stop()
    assert code == 0, proc.text
    done = applied()
    assert done, "the batch in hand was committed"
    assert len(done) == len(set(done)), "nothing applied twice"
    assert sorted(broker.started()) == done, proc.text
    assert len(done) < total, "the consumer stopped after its batch instead of draining all"
    assert broker.depth() == total - len(done), "committed messages were acked, none lost"
    # A fresh consumer takes the rest; each row is applied exactly once overall.
    rest = consumer("--cqrs-id", "tally", env=broker.env())
    rest.wait_for(READY)
    eventually(lambda: applied() == list(range(1, total + 1)), "the rest of the queue")
    assert rest.stop() == 0
    assert broker.depth() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_shutdown_timeout_cuts_a_batch_off_without_losing_it(
    broker: Broker, consumer: Callable[..., ConsumeProcess], workers: int
) -> None:
    proc = consumer(
        "-w",
        str(workers),
        "--cqrs-id",
        "tally",
        "--sigint-timeout",  # the django-cqrs spelling of --shutdown-timeout
        "0.5",
        env=broker.env(delay=WAIT),
    )
    for _ in range(workers):
        proc.wait_for(READY)
    broker.publish(range(1, 5))
    eventually(broker.started, "a slow batch to start")
    assert proc.stop() == 1
    assert "did not" in proc.text and "within 0.5 s" in proc.text
    assert applied() == []
    eventually(lambda: broker.depth() == 4, "the unacked messages back in the queue")


def test_killed_worker_is_restarted_and_the_queue_drains(
    broker: Broker, consumer: Callable[..., ConsumeProcess]
) -> None:
    total = 24
    proc = consumer("-w", "2", "--cqrs-id", "tally", env=broker.env(delay=0.1))
    pids = {int(proc.wait_for(READY).group(1)) for _ in range(2)}
    broker.publish(range(1, total + 1))
    eventually(broker.started, "a batch to start")
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    proc.wait_for(rf"worker {victim} exited with code -9; restarting")
    replacement = int(proc.wait_for(READY).group(1))
    assert replacement not in pids
    eventually(lambda: applied() == list(range(1, total + 1)), "every row applied")
    eventually(lambda: broker.depth() == 0, "an empty queue")
    assert proc.stop() == 0, proc.text
    assert applied() == list(range(1, total + 1)), "no row applied twice"
