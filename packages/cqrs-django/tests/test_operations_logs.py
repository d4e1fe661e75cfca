"""What `cqrs_consume` prints day to day, against the real RabbitMQ.

A failing message costs one line per attempt (tracebacks are rate-limited) and one
`dead-lettered <cqrs_id>:<pk> (<reason>)` line when it is given up; a configuration error stops
the consumer with its fix instead of being retried forever; an unreachable broker is named
without its password.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import django
import pytest
from replica_support import ConsumeProcess, data, payload

from cqrs_rabbitmq import RabbitMQTransport

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.broker("rabbitmq")]

HOST = os.environ.get("CQRS_TEST_RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("CQRS_TEST_RABBITMQ_PORT", "5672"))
WAIT = 60.0
"""Upper bound for anything to happen (a hang guard, never a speed assertion)."""


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    from cqrs_rabbitmq.testing import required_vhost

    with required_vhost("cqrs_logs", HOST, PORT) as name:
        yield name


def url(vhost: str, *, port: int = PORT, password: str = "guest") -> str:
    return f"amqp://guest:{password}@{HOST}:{port}/{quote(vhost, safe='')}"


def env(url: str, queue: str, exchange: str) -> dict[str, str]:
    extra = {
        "exchange": exchange,
        "replica": {"batch_size": 10, "batch_timeout": 0.2},
        "rabbitmq": {"reconnect_delay": 0.2, "reconnect_max_delay": 1},
    }
    found = {
        "CQRS_TEST_TRANSPORT": "rabbitmq",
        "CQRS_TEST_URL": url,
        "CQRS_TEST_QUEUE": queue,
        "CQRS_TEST_SETTINGS": json.dumps(extra),
    }
    if django.VERSION >= (5, 1):
        found["CQRS_TEST_SQLITE_TRANSACTION_MODE"] = "IMMEDIATE"
    return found


@pytest.fixture
def consumer() -> Iterator[Callable[..., ConsumeProcess]]:
    started: list[ConsumeProcess] = []

    def start(*args: str, env: dict[str, str]) -> ConsumeProcess:
        started.append(ConsumeProcess(*args, env=env))
        return started[-1]

    yield start
    for proc in started:
        proc.kill()
        proc.process.wait(WAIT)


def eventually(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failing_message_costs_a_line_per_attempt_and_says_it_was_dead_lettered(
    vhost: str, consumer: Callable[..., ConsumeProcess]
) -> None:
    tag = uuid.uuid4().hex[:8]
    queue, exchange = f"replica_{tag}", f"cqrs_{tag}"
    proc = consumer("--cqrs-id", "flaky", env=env(url(vhost), queue, exchange))
    proc.wait_for(r"worker \d+ ready for ")
    pks = range(1, 7)
    transport = RabbitMQTransport({"url": url(vhost), "exchange": exchange})
    try:  # `Flaky` raises on mode "raise" and retries twice: three attempts each
        transport.produce_many(payload("flaky", data(pk, 0, pk, mode="raise")) for pk in pks)
    finally:
        transport.close()

    dead = re.compile(r"dead-lettered flaky:(\d+) \((.*)\)")
    eventually(lambda: len(dead.findall(proc.text)) >= len(pks), "every message dead-lettered")
    time.sleep(1.0)  # anything printed late would count too
    lines = proc.text.splitlines()
    reasons = dict(dead.findall(proc.text))
    assert sorted(map(int, reasons)) == list(pks)
    assert all("RuntimeError: flaky replica refuses this row" in r for r in reasons.values())
    for pk in pks:
        about = [line for line in lines if re.search(rf"\bflaky:{pk}\b", line)]
        assert len(about) == 4, about  # three attempts, one dead-lettered line
    # One traceback for the six messages' one distinct error, not one per attempt.
    assert proc.text.count("Traceback (most recent call last)") == 1, proc.text
    assert len(lines) < 4 * len(pks) + 60, proc.text


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_missing_vhost_stops_the_consumer_with_the_fix(
    vhost: str, consumer: Callable[..., ConsumeProcess], workers: str
) -> None:
    missing = f"cqrs_missing_{uuid.uuid4().hex[:8]}"
    proc = consumer("-w", workers, env=env(url(missing), "replica_x", "cqrs_x"))
    code = proc.process.wait(WAIT)
    text = proc.text
    assert code != 0, text
    assert "virtual host" in text and "create it or grant the user permissions" in text, text
    assert "Fix the setting, then start cqrs_consume again" in text, text
    assert "restarting in" not in text and "reconnecting in" not in text, text
    # Said once per worker (not once per retry); with -w N the supervisor points at it.
    assert 1 <= text.count("refused access to the virtual host") <= int(workers), text


def test_a_closed_port_names_the_address_without_the_password(
    consumer: Callable[..., ConsumeProcess],
) -> None:
    port = free_port()
    proc = consumer(env=env(url("/", port=port, password="s3cret-pw"), "replica_x", "cqrs_x"))
    proc.wait_for(rf"127\.0\.0\.1:{port}")
    time.sleep(1.0)
    assert "s3cret-pw" not in proc.text, proc.text
    assert proc.process.poll() is None, "a broker that is down is waited for, not fatal"


def test_a_closed_port_says_cannot_connect(consumer: Callable[..., ConsumeProcess]) -> None:
    port = free_port()
    proc = consumer(env=env(url("/", port=port), "replica_x", "cqrs_x"))
    line = proc.wait_for(rf"127\.0\.0\.1:{port}").string
    assert "cannot connect" in line.lower() and "refused" in line.lower(), line
    assert "unacknowledged" not in line, line


def test_an_out_of_order_save_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Two workers applying one row's create and update in either order is normal."""
    from dj_cqrs.replica.rules import Verdict, log_verdict

    with caplog.at_level(logging.DEBUG, "django-cqrs"):
        log_verdict(Verdict.OUT_OF_ORDER, "item", 1, stored=2, incoming=1)
    (record,) = caplog.records
    assert record.levelno < logging.WARNING
    assert record.getMessage().startswith("Wrong CQRS sync order, skipped: pk = 1, ")
    assert "already has the newer revision" in record.getMessage()
