"""Raw kombu publish/consume rate vs KombuTransport end to end, per backend, in one run.

    python packages/cqrs-kombu/benchmarks/bench_kombu.py [N] [amqp redis filesystem]

"raw" publishes N bodies with a plain kombu Producer (same connection options, so confirms on
AMQP) and drains them with a plain Consumer acking each message. "ours" is `produce_many` on
KombuTransport, then `consume` with a handler that applies the batch (decode, dispatch, ack).
Prints messages per second; nothing is asserted.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import tempfile
import time
import uuid

from kombu import Consumer, Exchange, Producer, Queue

from cqrs_core import codec
from cqrs_core.messages import Outcome
from cqrs_core.testing.suite import make_payload
from cqrs_kombu import KombuTransport
from cqrs_kombu._testing import amqp_url, cleanup_amqp, cleanup_redis, queue_family, redis_url

IDS = ("bench_a",)


def options_for(kind: str, folder: str) -> tuple[dict, callable]:
    name = uuid.uuid4().hex[:8]
    queue, exchange = f"bench_{name}", f"benchx_{name}"
    if kind == "amqp":
        return {"url": amqp_url(), "queue": queue, "exchange": exchange}, (
            lambda: cleanup_amqp(exchange, queue_family(queue) + [f"raw_{queue}"])
        )
    if kind == "redis":
        prefix = f"bench_{name}:"
        return {
            "url": redis_url(),
            "queue": queue,
            "exchange": exchange,
            "transport_options": {"global_keyprefix": prefix},
        }, (lambda: cleanup_redis(prefix))
    return {"url": f"filesystem://{folder}/{name}", "queue": queue, "exchange": exchange}, (
        lambda: None
    )


def raw_rate(transport: KombuTransport, n: int, body: bytes) -> tuple[float, float]:
    exchange = Exchange(transport.common.exchange + "_raw", type="topic", durable=True)
    queue = Queue(f"raw_{transport.common.queue}", exchange, routing_key="bench_a", durable=True)
    with transport.connect() as conn:
        channel = conn.channel()
        queue(channel).declare()
        producer = Producer(channel)
        started = time.perf_counter()
        for _ in range(n):
            producer.publish(
                body,
                exchange=exchange,
                routing_key="bench_a",
                content_type="text/plain",
                content_encoding="utf-8",
                delivery_mode=2,
            )
        publish = n / (time.perf_counter() - started)
        got = [0]

        def on_message(message):
            message.ack()
            got[0] += 1

        consumer = Consumer(
            conn.channel(),
            queues=[queue],
            on_message=on_message,
            prefetch_count=transport.common.prefetch_count,
        )
        consumer.consume()
        started = time.perf_counter()
        while got[0] < n:
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=1)
        consume = n / (time.perf_counter() - started)
        with contextlib.suppress(Exception):
            queue(channel).delete()
            exchange(channel).delete()
    return publish, consume


def ours_rate(options: dict, n: int) -> tuple[float, float]:
    consumer = KombuTransport(options)
    consumer.declare(IDS)
    payloads = [make_payload(pk, "bench_a") for pk in range(n)]
    with KombuTransport({**options, "queue": None}) as producer:
        started = time.perf_counter()
        producer.produce_many(payloads)
        publish = n / (time.perf_counter() - started)
    count = [0]
    started = [0.0]

    def handler(batch):
        if not started[0]:
            started[0] = time.perf_counter()
        count[0] += len(batch)
        if count[0] >= n:
            consumer.stop()
        return [Outcome.applied()] * len(batch)

    consumer.consume(handler, cqrs_ids=IDS)
    consume = n / (time.perf_counter() - started[0])
    consumer.close()
    return publish, consume


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv and argv[0].isdigit() else 2000
    kinds = [a for a in argv if not a.isdigit()] or ["amqp", "redis", "filesystem"]
    body = codec.encode(make_payload(1, "bench_a"))
    folder = tempfile.mkdtemp(prefix="bench_kombu_")
    print(f"{n} messages of {len(body)} bytes; messages/second")
    print(
        f"{'backend':<11}{'raw publish':>13}{'raw consume':>13}{'ours publish':>14}{'ours consume':>14}"
    )
    try:
        for kind in kinds:
            options, cleanup = options_for(kind, folder)
            try:
                transport = KombuTransport(options)
                raw_pub, raw_con = raw_rate(transport, n, body)
                our_pub, our_con = ours_rate(options, n)
                print(f"{kind:<11}{raw_pub:>13.0f}{raw_con:>13.0f}{our_pub:>14.0f}{our_con:>14.0f}")
            finally:
                cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
