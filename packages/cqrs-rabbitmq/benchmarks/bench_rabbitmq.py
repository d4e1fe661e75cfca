"""Throughput of cqrs-rabbitmq beside raw pika, same run, same broker (not a test).

    python packages/cqrs-rabbitmq/benchmarks/bench_rabbitmq.py [--url URL] [-n 5000]

Prints messages/s for: raw pika publish with confirms (one by one, and pipelined on a
SelectConnection), our `produce` and `produce_many`, raw pika consume+ack, and our
consume+ack with a no-op handler. Every name is unique and deleted at the end.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable

import pika

from cqrs_core.messages import Outcome
from cqrs_core.testing.suite import make_payload
from cqrs_rabbitmq import RabbitMQTransport

CQRS_ID = "bench_model"


def rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<52} {count / seconds:>10,.0f} msg/s  ({count} in {seconds:.2f} s)")


def timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def raw_one_by_one(url: str, exchange: str, body: bytes, n: int) -> float:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    props = pika.BasicProperties(content_type="text/plain", delivery_mode=2)

    def run() -> None:
        for _ in range(n):
            channel.basic_publish(exchange, CQRS_ID, body, props, mandatory=True)

    seconds = timed(run)
    connection.close()
    return seconds


def raw_pipelined(url: str, exchange: str, body: bytes, n: int) -> float:
    """Public pika API: SelectConnection, publish everything, count confirms in callbacks."""
    props = pika.BasicProperties(content_type="text/plain", delivery_mode=2)
    state = {"confirmed": 0, "started": 0.0, "seconds": 0.0}

    def on_confirm(frame: pika.frame.Method) -> None:
        tag = frame.method.delivery_tag
        state["confirmed"] = tag if frame.method.multiple else state["confirmed"] + 1
        if state["confirmed"] >= n:
            state["seconds"] = time.perf_counter() - state["started"]
            connection.close()

    def on_channel(channel: pika.channel.Channel) -> None:
        def publish_all(_frame: object) -> None:
            state["started"] = time.perf_counter()
            for _ in range(n):
                channel.basic_publish(exchange, CQRS_ID, body, props, mandatory=True)

        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=publish_all)

    connection = pika.SelectConnection(
        pika.URLParameters(url),
        on_open_callback=lambda conn: conn.channel(on_open_callback=on_channel),
        on_close_callback=lambda conn, reason: conn.ioloop.stop(),
    )
    connection.ioloop.start()
    return state["seconds"]


def drain_queue(url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_purge(queue)
    connection.close()


def raw_consume(url: str, queue: str, n: int, prefetch: int) -> float:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    seen = [0]

    def on_message(ch, method, _props, _body) -> None:
        ch.basic_ack(method.delivery_tag)  # one ack per message, as django-cqrs does
        seen[0] += 1
        if seen[0] >= n:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    seconds = timed(channel.start_consuming)
    connection.close()
    return seconds


def our_consume(options: dict, n: int) -> float:
    transport = RabbitMQTransport(options)
    seen = [0]
    done = threading.Event()
    started = [0.0]

    def handler(payloads):
        if not seen[0]:
            started[0] = time.perf_counter()
        seen[0] += len(payloads)
        if seen[0] >= n:
            done.set()
        return [Outcome.applied()] * len(payloads)

    thread = threading.Thread(
        target=transport.consume, args=(handler,), kwargs={"cqrs_ids": [CQRS_ID]}
    )
    first = time.perf_counter()
    thread.start()
    done.wait(300)
    seconds = time.perf_counter() - first
    transport.stop()
    thread.join(30)
    transport.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    n, url = args.n, args.url
    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"bench_x_{tag}", f"bench_q_{tag}"
    options = {
        "url": url,
        "exchange": exchange,
        "queue": queue,
        "rabbitmq": {"publish_timeout": 60},
    }
    transport = RabbitMQTransport(options)
    transport.declare([CQRS_ID])
    payloads = [make_payload(pk, cqrs_id=CQRS_ID) for pk in range(n)]
    body = transport.outgoing(payloads[0]).body
    print(f"RabbitMQ {url.split('@')[-1]}  n={n}  body={len(body)} bytes  pika {pika.__version__}")
    try:
        print("-- publish (persistent, publisher confirms, mandatory)")
        rate("raw pika BlockingChannel, confirm each", n, raw_one_by_one(url, exchange, body, n))
        drain_queue(url, queue)
        rate(
            "raw pika SelectConnection, pipelined confirms",
            n,
            raw_pipelined(url, exchange, body, n),
        )
        drain_queue(url, queue)
        rate(
            "ours produce() one by one", n, timed(lambda: [transport.produce(p) for p in payloads])
        )
        drain_queue(url, queue)
        for size in (100, n):

            def burst(size: int = size) -> None:
                for start in range(0, n, size):
                    transport.produce_many(payloads[start : start + size])

            rate(f"ours produce_many(), {size} per call", n, timed(burst))
            drain_queue(url, queue)
        print("-- consume (ack after handler)")
        for prefetch in (10, 100):
            transport.produce_many(payloads)
            rate(
                f"raw pika basic_consume + ack each, prefetch {prefetch}",
                n,
                raw_consume(url, queue, n, prefetch),
            )
            transport.produce_many(payloads)
            tuned = dict(
                options, consumer_prefetch_count=prefetch, replica={"batch_size": prefetch}
            )
            rate(
                f"ours consume, no-op handler, prefetch/batch {prefetch}", n, our_consume(tuned, n)
            )
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        for name in (queue, f"dead_letter_{queue}", f"{queue}.delay"):
            channel.queue_delete(name)
        for name in (exchange, f"{exchange}.delay"):
            channel.exchange_delete(name)
        connection.close()
        transport.close()


if __name__ == "__main__":
    main()
