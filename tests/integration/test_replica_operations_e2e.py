"""Replica operations through real RabbitMQ and a `cqrs_consume` subprocess.

- Messages for a CQRS_ID that no replica model has (a model removed in a deploy whose binding
  still routes into the queue) are dead-lettered at once with the reason, so the queue drains
  and good messages are not held up behind them.
- `cqrs_dead_letters dump` never writes a body's control characters to the terminal, and its
  JSON format gives the exact body back.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import MANAGE, WAIT, Replication

from cqrs_core.constants import SignalType
from cqrs_core.payload import TransportPayload

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.parametrize("backend", ["rabbitmq"], indirect=True),
]

NOW = str(datetime.datetime.now(datetime.timezone.utc))
GONE = "gone_model"
"""A CQRS_ID no replica model of the test project has."""


@contextlib.contextmanager
def amqp_channel(replication: Replication) -> Iterator[Any]:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(replication.backend.settings["url"]))
    try:
        yield connection.channel()
    finally:
        connection.close()


def depth(replication: Replication, queue: str) -> int:
    with amqp_channel(replication) as channel:
        return int(channel.queue_declare(queue, passive=True).method.message_count)


def item(pk: int, cqrs_id: str = "item") -> TransportPayload:
    return TransportPayload(
        signal_type=SignalType.SAVE,
        cqrs_id=cqrs_id,
        instance_data={"id": pk, "name": f"n{pk}", "cqrs_revision": 0, "cqrs_updated": NOW},
        instance_pk=pk,
    )


def test_messages_for_a_removed_model_are_dead_lettered_and_the_queue_drains(
    replication: Replication,
) -> None:
    from cqrs_testproject.replica_app.models import Item

    consumer = replication.consumer()
    queue = replication.backend.queue
    transport = replication.transport()
    transport.declare([GONE])  # the bindings a model removed in the last deploy left behind
    transport.produce_many([item(n, GONE) for n in range(300)])
    started = time.monotonic()
    transport.produce(item(1))
    replication.wait_until(lambda: Item.objects.filter(pk=1).exists(), "the good message")
    good_after = time.monotonic() - started
    dlq = f"dead_letter_{queue}"
    replication.wait_until(
        lambda: depth(replication, dlq) == 300 and depth(replication, queue) == 0,
        "300 dead letters and an empty queue",
        timeout=WAIT,
    )
    letters = transport.dead_letters()
    assert {json.loads(letter.body)["cqrs_id"] for letter in letters} == {GONE}
    assert all(
        letter.reason.startswith(f"no replica model has CQRS_ID '{GONE}' in this service")
        for letter in letters
    ), letters[0].reason
    assert consumer.process.poll() is None, consumer.text()
    replication.report("removed_model", good_after=f"{good_after:.1f}s")


HOSTILE = (
    b'{"cqrs_id": "item", "note": "\x1b]0;pwned\x07 done\r\x1b[2J\x08 \xe2\x80\xae'
    b'gnp.exe \\u001b \xff"'
)


def dump(replication: Replication, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "CQRS_TEST_SETTINGS": json.dumps(replication.cqrs())}
    return subprocess.run(
        [sys.executable, str(MANAGE), "cqrs_dead_letters", "dump", *args],
        capture_output=True,
        env=env,
        timeout=WAIT,
        check=True,
    )


def test_dump_of_a_hostile_dead_letter_is_escaped_and_json_is_exact(
    replication: Replication,
) -> None:
    replication.consumer()
    queue = replication.backend.queue
    with amqp_channel(replication) as channel:  # a malformed body, as a broken master sends it
        channel.basic_publish(replication.backend.settings["exchange"], "item", HOSTILE)
    replication.wait_until(
        lambda: depth(replication, f"dead_letter_{queue}") == 1, "the malformed message"
    )
    shown = dump(replication)
    for forbidden in (b"\x1b", b"\x07", b"\r", b"\x08", "\u202e".encode(), b"\xff"):
        assert forbidden not in shown.stdout + shown.stderr, (shown.stdout, shown.stderr)
    assert b"\\u001b]0;pwned\\u0007 done\\u000d\\u001b[2J" in shown.stdout
    assert b"#1 malformed message" in shown.stderr
    exact = dump(replication, "--format", "json")
    [record] = [json.loads(line) for line in exact.stdout.splitlines()]
    assert record["body"].encode("utf-8", "surrogateescape") == HOSTILE
    assert record["reason"].startswith("malformed message")


def test_messages_no_worker_takes_are_dead_lettered_after_bounded_releases(
    replication: Replication, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker started with --cqrs-id item alone: author messages are released to the tail,
    then, past the release bounds, dead-lettered with the reason instead of circulating."""
    import threading

    from cqrs_testproject.replica_app.models import Item

    from dj_cqrs import conf
    from dj_cqrs.consumer import consume
    from dj_cqrs.replica import releases

    monkeypatch.setattr(releases, "RELEASE_LIMIT", 5)
    monkeypatch.setattr(releases, "RELEASE_WINDOW", 1.0)
    queue = replication.backend.queue
    transport = replication.transport()
    transport.declare(["author", "item"])
    transport.produce_many([item(n, "author") for n in range(20)])
    transport.produce(item(2))
    worker = conf.transport_class()(conf.transport_options())
    thread = threading.Thread(target=consume, args=(["item"],), kwargs={"transport": worker})
    thread.start()
    try:
        replication.wait_until(lambda: Item.objects.filter(pk=2).exists(), "the item message")
        replication.wait_until(
            lambda: (
                depth(replication, f"dead_letter_{queue}") == 20 and depth(replication, queue) == 0
            ),
            "20 dead letters and an empty queue",
        )
    finally:
        worker.stop()
        thread.join(WAIT)
        worker.close()
    letters = transport.dead_letters()
    assert {json.loads(letter.body)["cqrs_id"] for letter in letters} == {"author"}
    assert letters[0].reason.startswith("no worker of this service takes CQRS_ID 'author'")
    assert "--cqrs-id item" in letters[0].reason
