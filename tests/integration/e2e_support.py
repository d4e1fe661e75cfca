"""End-to-end helpers and fixtures: the master is this pytest process, the replica a real `cqrs_consume`.

Master and replica apps live in one Django test project and one database (the SQLite file named
by CQRS_TEST_RUN_ID, or PostgreSQL with CQRS_TEST_DB=postgres), so a subprocess started here
sees what the test wrote and the test sees what the subprocess applied. Each test gets unique
broker names on its backend (a fresh RabbitMQ vhost per session, a Redis key prefix, a folder,
Kafka topic prefix and group); everything is deleted afterwards. A backend that cannot be
reached skips the test, or fails it when CI is set (`service_unavailable`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from cqrs_core.testing.plugin import service_unavailable
from cqrs_core.testing.proxy import TcpProxy
from cqrs_core.testing.suite import unique_name

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "packages" / "cqrs-django" / "tests" / "cqrs_testproject" / "manage.py"
READY = re.compile(r"worker (\d+) ready for ")
WAIT = 90.0
"""Hang guard for a consumer to start or for replicas to catch up (not a speed assertion)."""

RABBIT = ("127.0.0.1", 5672)
REDIS = ("127.0.0.1", 6379)
REDIS_DB = 8
ALL_BACKENDS = ("rabbitmq", "kombu-redis", "kombu-amqp", "kombu-filesystem", "kafka")
FAULT_BACKENDS = ("rabbitmq", "kombu-redis", "kombu-amqp", "kafka")
REPORT: list[str] = []
"""Lines printed at the end of the run (see conftest's pytest_terminal_summary)."""
SQLITE_MODE_ENV = "CQRS_TEST_SQLITE_TRANSACTION_MODE"
META_FUNCTION = "cqrs_testproject.master_app.cqrs_hooks.golden_meta"


def reachable(address: tuple[str, int]) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(address, timeout=2):
        return True
    return False


@pytest.fixture(scope="session")
def rabbit_vhost() -> Iterator[str]:
    """A RabbitMQ vhost for the session (deleted at the end); "/" if rabbitmqctl is missing."""
    if not reachable(RABBIT):
        service_unavailable("RabbitMQ", f"{RABBIT[0]}:{RABBIT[1]}")
    from cqrs_rabbitmq.testing import temporary_vhost

    with temporary_vhost("cqrs_e2e") as name:
        yield name or "/"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A Tansu broker for the session (or $CQRS_TEST_KAFKA_BOOTSTRAP), from cqrs_kafka.testing."""
    try:
        from cqrs_kafka.testing import kafka_bootstrap as bootstrap_context
    except ImportError as exc:
        service_unavailable("Kafka test helpers (cqrs_kafka.testing)", exc)
    context = bootstrap_context()
    try:
        bootstrap = context.__enter__()
    except Exception as exc:  # noqa: BLE001 - any failure to start means no broker
        service_unavailable("Kafka (tansu)", exc)
    try:
        yield bootstrap
    finally:
        context.__exit__(None, None, None)


# -- backends ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Backend:
    """One broker setup: the CQRS settings that reach it, and how to reach it through a proxy."""

    name: str
    settings: dict[str, Any]
    """CQRS keys for this backend (transport, url, exchange, queue, ...)."""
    address: tuple[str, int] | None
    """Broker (host, port) for a TcpProxy; None if not proxyable (filesystem)."""
    proxied: Callable[[int], dict[str, Any]] | None = None
    """CQRS keys reaching the broker through a proxy listening on that port."""
    queues: list[str] = dataclasses.field(default_factory=list)

    @property
    def queue(self) -> str:
        return str(self.settings["queue"])

    def other_queue(self) -> str:
        """A second replica service's queue name (cleaned up with the backend)."""
        name = f"{self.queue}_b"
        self.queues.append(name)
        return name


def _rabbitmq(vhost: str, cleanups: list[Callable[[], None]]) -> Backend:
    queue_name, exchange = unique_name("e2e"), unique_name("e2ex")
    path = quote(vhost, safe="")

    def url(port: int) -> str:
        return f"amqp://guest:guest@{RABBIT[0]}:{port}/{path}"

    base = {"transport": "rabbitmq", "url": url(RABBIT[1]), "exchange": exchange}
    backend = Backend(
        "rabbitmq",
        {**base, "queue": queue_name, "rabbitmq": {"publish_timeout": 10}},
        RABBIT,
        lambda port: {"url": url(port)},
        [queue_name],
    )
    if vhost == "/":
        cleanups.append(lambda: _delete_amqp(url(RABBIT[1]), exchange, backend.queues))
    return backend


def _kombu_amqp(vhost: str, cleanups: list[Callable[[], None]]) -> Backend:
    queue_name, exchange = unique_name("e2e"), unique_name("e2ex")

    def url(port: int) -> str:
        return f"amqp://guest:guest@{RABBIT[0]}:{port}/{vhost}"

    backend = Backend(
        "kombu-amqp",
        {"transport": "kombu", "url": url(RABBIT[1]), "exchange": exchange, "queue": queue_name},
        RABBIT,
        lambda port: {"url": url(port)},
        [queue_name],
    )
    if vhost == "/":
        cleanups.append(lambda: _delete_amqp(url(RABBIT[1]), exchange, backend.queues))
    return backend


def _delete_amqp(url: str, exchange: str, queues: list[str]) -> None:
    """Delete what a test declared on the shared "/" vhost (only without rabbitmqctl)."""
    import pika

    with contextlib.suppress(Exception):
        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            for base in queues:
                for name in (base, f"dead_letter_{base}", f"{base}.delay", f"delayed_{base}"):
                    channel = connection.channel()
                    with contextlib.suppress(Exception):
                        channel.queue_delete(name)
                        channel.close()
            for name in (exchange, f"{exchange}.delay"):
                channel = connection.channel()
                with contextlib.suppress(Exception):
                    channel.exchange_delete(name)
                    channel.close()
        finally:
            connection.close()


def _kombu_redis(cleanups: list[Callable[[], None]]) -> Backend:
    if not reachable(REDIS):
        service_unavailable("Redis", f"{REDIS[0]}:{REDIS[1]}")
    prefix = f"{unique_name('e2er')}:"

    def cleanup() -> None:
        import redis

        client = redis.Redis(*REDIS, db=REDIS_DB)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()

    cleanups.append(cleanup)
    return Backend(
        "kombu-redis",
        {
            "transport": "kombu",
            "url": f"redis://{REDIS[0]}:{REDIS[1]}/{REDIS_DB}",
            "exchange": unique_name("e2ex"),
            "queue": unique_name("e2e"),
            # a SIGKILLed consumer's unacked messages come back after this many seconds
            "transport_options": {"global_keyprefix": prefix, "visibility_timeout": 10},
        },
        REDIS,
        lambda port: {"url": f"redis://{REDIS[0]}:{port}/{REDIS_DB}"},
    )


def _kombu_filesystem(folder: Path) -> Backend:
    folder.mkdir(parents=True)
    return Backend(
        "kombu-filesystem",
        {
            "transport": "kombu",
            "url": f"filesystem://{folder}",
            "exchange": unique_name("e2ex"),
            "queue": unique_name("e2e"),
        },
        None,
    )


def _kafka(bootstrap: str, cleanups: list[Callable[[], None]]) -> Backend:
    from cqrs_kafka.testing import FAST_CONSUMER, cleanup

    prefix = unique_name("e2ek") + "."
    backend = Backend(
        "kafka",
        {
            "transport": "kafka",
            "url": f"kafka://{bootstrap}",
            "queue": unique_name("e2e"),
            "kafka": {
                "topic_prefix": prefix,
                "partitions": 2,
                "replication_factor": 1,
                "publish_timeout": 10,
                "consumer": dict(FAST_CONSUMER),
            },
        },
        None,  # a proxy must be advertised by the broker itself: see `kafka_behind_proxy`
    )
    backend.queues.append(backend.queue)

    def drop() -> None:
        groups = [g for q in backend.queues for g in (q, f"{q}.dead-letters")]
        cleanup(bootstrap, prefix, groups)

    cleanups.append(drop)
    return backend


def make_backend(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> Iterator[Backend]:
    cleanups: list[Callable[[], None]] = []
    if name == "rabbitmq":
        backend = _rabbitmq(request.getfixturevalue("rabbit_vhost"), cleanups)
    elif name == "kombu-amqp":
        backend = _kombu_amqp(request.getfixturevalue("rabbit_vhost"), cleanups)
    elif name == "kombu-redis":
        backend = _kombu_redis(cleanups)
    elif name == "kombu-filesystem":
        backend = _kombu_filesystem(tmp_path / "broker")
    elif name == "kafka":
        backend = _kafka(request.getfixturevalue("kafka_bootstrap"), cleanups)
    else:
        raise ValueError(name)
    try:
        yield backend
    finally:
        for cleanup in cleanups:
            with contextlib.suppress(Exception):
                cleanup()


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request, request.param, tmp_path)


@pytest.fixture(params=FAULT_BACKENDS)
def fault_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request, request.param, tmp_path)


@contextlib.contextmanager
def kafka_behind_proxy(backend: Backend) -> Iterator[tuple[Backend, TcpProxy]]:
    """A private Tansu that advertises a proxy's port: every Kafka connection crosses the proxy."""
    from cqrs_kafka.testing import TansuBroker, free_port

    port = free_port()
    proxy = TcpProxy("127.0.0.1", port)
    try:
        with TansuBroker(port, advertised_port=proxy.port) as broker:
            settings = {**backend.settings, "url": f"kafka://{broker.bootstrap}"}
            yield dataclasses.replace(backend, settings=settings), proxy
    finally:
        proxy.close()


# -- the consumer subprocess ---------------------------------------------------------------------


class Consumer:
    """A `manage.py cqrs_consume` process; its output is collected by a thread."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.env = env
        self.args = args
        self.output: list[str] = []
        self.lines: queue.Queue[str] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, str(MANAGE), "cqrs_consume", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_ready(self) -> Consumer:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if READY.search(line):
                return self
        raise AssertionError(f"cqrs_consume did not get ready; output:\n{self.text()}")

    def text(self) -> str:
        return "".join(self.output)

    def stop(self) -> int:
        """SIGTERM: the batch in hand is finished, then the process exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(WAIT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT)


# -- the end-to-end environment ----------------------------------------------------------------


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if key in ("master", "replica") and isinstance(value, dict):
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    return merged


@dataclasses.dataclass
class Replication:
    """The master (this process, through pytest-django `settings`) and its consumers."""

    backend: Backend
    settings: Any
    tmp_path: Path
    consumers: list[Consumer] = dataclasses.field(default_factory=list)
    relayed: int = 0
    """Events the outbox relay had to send because the fast path did not (reported)."""

    def __post_init__(self) -> None:
        self.attempts_dir = self.tmp_path / "attempts"
        self.attempts_dir.mkdir()
        self.base = dict(self.settings.CQRS)

    def cqrs(self, **extra: Any) -> dict[str, Any]:
        """CQRS overrides for this backend (the same for master and consumers)."""
        common = {
            "master": {"meta_function": META_FUNCTION},
            "replica": {"CQRS_RETRY_DELAY": 0.3, "batch_size": 50},
        }
        return _merge(_merge(common, self.backend.settings), extra)

    def configure_master(self, **extra: Any) -> None:
        from dj_cqrs import conf

        self.settings.CQRS = _merge(self.base, self.cqrs(**extra))
        conf.reset_transport()
        with contextlib.suppress(ImportError):
            from dj_cqrs.outbox import background_publisher

            background_publisher.resume()

    def consumer(
        self, *args: str, db_name: str | None = None, ready: bool = True, **extra: Any
    ) -> Consumer:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "CQRS_TEST_SETTINGS": json.dumps(self.cqrs(**extra)),
            "CQRS_TEST_ATTEMPTS_DIR": str(self.attempts_dir),
        }
        if db_name is not None:
            env["CQRS_TEST_DB_NAME"] = db_name
        consumer = Consumer(env, args)
        self.consumers.append(consumer)
        return consumer.wait_ready() if ready else consumer

    def transport(self) -> Any:
        """The master's transport (also usable to read the replica queue's dead letters)."""
        from dj_cqrs import conf

        return conf.get_transport()

    def relay_once(self) -> None:
        """Send what the outbox fast path left behind (no-op without the outbox)."""
        from django.core.management import call_command
        from django.core.management.base import CommandError

        out = io.StringIO()
        try:
            call_command("cqrs_relay", "--once", stdout=out)
        except (CommandError, LookupError, ImportError):
            return
        match = re.search(r"after sending (\d+) event", out.getvalue())
        if match:
            self.relayed += int(match.group(1))

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        """Poll `condition` (running the outbox relay now and then); fail after `timeout`."""
        deadline = time.monotonic() + timeout
        next_relay = time.monotonic() + 3
        while True:
            if condition():
                return
            if time.monotonic() > deadline:
                outputs = "\n---\n".join(c.text()[-3000:] for c in self.consumers)
                raise AssertionError(f"timed out waiting for {what}; consumer output:\n{outputs}")
            if time.monotonic() > next_relay:
                self.relay_once()
                next_relay = time.monotonic() + 3
            time.sleep(0.2)

    def stop_consumers(self) -> None:
        for consumer in self.consumers:
            with contextlib.suppress(Exception):
                consumer.stop()
            consumer.kill()
        self.consumers.clear()

    def close(self) -> None:
        from dj_cqrs import conf

        self.stop_consumers()
        conf.reset_transport()

    def report(self, test: str, **numbers: Any) -> None:
        """Note numbers (lost, duplicated applications...) for the end-of-run summary."""
        shown = ", ".join(f"{k}={v}" for k, v in {**numbers, "relayed": self.relayed}.items())
        REPORT.append(f"{test}[{self.backend.name}]: {shown}")


@contextlib.contextmanager
def sqlite_immediate() -> Iterator[None]:
    """Make this process and the consumers start SQLite write transactions with BEGIN IMMEDIATE.

    Master and replica share one SQLite file here (they never do in production); with deferred
    transactions a read that turns into a write fails at once with "database is locked" when
    the other process writes, instead of waiting for the busy timeout.
    """
    from django.db import connection

    if connection.vendor != "sqlite":
        yield
        return
    options = connection.settings_dict.setdefault("OPTIONS", {})
    before = options.get("transaction_mode")
    connection.close()
    options["transaction_mode"] = "IMMEDIATE"
    previous_env = os.environ.get(SQLITE_MODE_ENV)
    os.environ[SQLITE_MODE_ENV] = "IMMEDIATE"
    try:
        yield
    finally:
        connection.close()
        if before is None:
            options.pop("transaction_mode", None)
        else:
            options["transaction_mode"] = before
        if previous_env is None:
            os.environ.pop(SQLITE_MODE_ENV, None)
        else:
            os.environ[SQLITE_MODE_ENV] = previous_env


def _replication(backend: Backend, settings: Any, tmp_path: Path) -> Iterator[Replication]:
    with sqlite_immediate():
        env = Replication(backend, settings, tmp_path)
        env.configure_master()
        try:
            yield env
        finally:
            env.close()


@pytest.fixture
def replication(backend: Backend, settings: Any, tmp_path: Path) -> Iterator[Replication]:
    yield from _replication(backend, settings, tmp_path)


@pytest.fixture
def fault_replication(
    fault_backend: Backend, settings: Any, tmp_path: Path
) -> Iterator[Replication]:
    yield from _replication(fault_backend, settings, tmp_path)


# -- states --------------------------------------------------------------------------------------


def master_state() -> dict[str, dict[Any, tuple[Any, ...]]]:
    from cqrs_testproject.master_app.models import Author, Product, Tally

    return {
        "author": {
            a.pk: (a.name, a.email, a.birth_date, a.cqrs_revision) for a in Author.objects.all()
        },
        "product": {
            p.pk: (p.name, p.quantity, p.price, p.release_date, p.published_at, p.is_active,
                   p.note, p.external_uuid, p.cqrs_revision)
            for p in Product.objects.all()
        },
        "tally": {
            t.pk: (t.name, t.value, t.fail_times, t.cqrs_revision) for t in Tally.objects.all()
        },
    }  # fmt: skip


def replica_state() -> dict[str, dict[Any, tuple[Any, ...]]]:
    from cqrs_testproject.replica_app.models import AuthorRef, ProductRef, TallyRef

    return {
        "author": {
            a.pk: (a.name, a.email, a.birth_date, a.cqrs_revision) for a in AuthorRef.objects.all()
        },
        "product": {
            p.pk: (p.title, p.stock, p.price, p.release_date, p.published_at, p.is_active,
                   p.note, p.external_uuid, p.cqrs_revision)
            for p in ProductRef.objects.all()
        },
        "tally": {
            t.pk: (t.name, t.value, t.fail_times, t.cqrs_revision) for t in TallyRef.objects.all()
        },
    }  # fmt: skip


def differences(
    master: dict[str, dict[Any, Any]], replica: dict[str, dict[Any, Any]]
) -> dict[str, int]:
    """Per CQRS_ID: rows missing or different on the replica (lost), and extra rows."""
    found = {}
    for cqrs_id, rows in master.items():
        other = replica.get(cqrs_id, {})
        lost = sum(1 for pk, row in rows.items() if other.get(pk) != row)
        extra = sum(1 for pk in other if pk not in rows)
        if lost or extra:
            found[cqrs_id] = lost + extra
    return found


def missing(
    master: dict[str, dict[Any, Any]], replica: dict[str, dict[Any, Any]], limit: int = 10
) -> dict[str, list[Any]]:
    """Up to `limit` keys per CQRS_ID whose replica row is missing or different (diagnostics)."""
    found = {}
    for cqrs_id, rows in master.items():
        other = replica.get(cqrs_id, {})
        keys = [(pk, row, other.get(pk)) for pk, row in rows.items() if other.get(pk) != row]
        if keys:
            found[cqrs_id] = keys[:limit]
    return found


def duplicated_applications() -> int:
    """Committed applications of one (row, revision) beyond the first (TallyRef's log)."""
    from cqrs_testproject.replica_app.models import ApplyLog
    from django.db.models import Count

    rows = (
        ApplyLog.objects.exclude(kind="sync")
        .values("instance_pk", "cqrs_revision", "kind")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    return sum(row["n"] - 1 for row in rows)


def sqlite_copy(destination: Path) -> str:
    """Copy the (empty, migrated) test database for a second replica service; its path."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("a second replica database is made by copying the SQLite test database")
    source = sqlite3.connect(connection.settings_dict["NAME"])
    target = sqlite3.connect(destination)
    with target:
        source.backup(target)
    source.close()
    target.close()
    return str(destination)


def sqlite_rows(path: str, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path, timeout=30)
    try:
        return list(connection.execute(sql))
    finally:
        connection.close()
