from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from cqrs_core.constants import SignalType
from cqrs_core.testing.consuming import Recorder
from cqrs_core.testing.suite import make_payload
from cqrs_kafka import KafkaTransport
from cqrs_kafka.headers import QUEUE, SIGNAL

pytestmark = pytest.mark.broker("kafka")
CQRS_ID = "orders"


def read_topic(bootstrap: str, topic: str, partitions: int, want: int) -> list:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "inspect", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, deadline = [], time.monotonic() + 20
    while len(got) < want and time.monotonic() < deadline:
        got += [m for m in consumer.consume(100, 0.2) if not m.error()]
    consumer.close()
    return got


def test_record_layout_key_headers_and_topic(kafka_options):
    """Key = primary key, signal and target queue in headers, topic = prefix + CQRS_ID."""
    producer = KafkaTransport(kafka_options)
    producer.produce_many(
        [
            make_payload(41, CQRS_ID),
            make_payload(42, CQRS_ID, signal_type=SignalType.SYNC, queue="billing"),
        ]
    )
    producer.close()
    topic = kafka_options["exchange"] + "." + CQRS_ID
    records = read_topic(kafka_options["bootstrap_servers"], topic, 2, 2)
    by_key = {m.key(): dict(m.headers()) for m in records}
    assert set(by_key) == {b"41", b"42"}
    assert by_key[b"41"][SIGNAL] == b"SAVE" and QUEUE not in by_key[b"41"]
    assert by_key[b"42"][SIGNAL] == b"SYNC" and by_key[b"42"][QUEUE] == b"billing"


def test_two_consumers_in_one_group_keep_per_row_order(kafka_options):
    """Rows spread over 4 partitions and 2 group members: all arrive, each row in order."""
    options = {**kafka_options, "kafka": {**kafka_options["kafka"], "partitions": 4}}
    rows, revisions = 16, 8
    seen: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    def handler_for(member):
        def handler(payloads):
            with lock:
                seen.extend(
                    (member, p.instance_pk, p.instance_data["cqrs_revision"]) for p in payloads
                )
            time.sleep(0.01)
            return [Recorder().decide(p, 1) for p in payloads]

        return handler

    members = [KafkaTransport(options) for _ in range(2)]
    members[0].declare([CQRS_ID])
    ready = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(
            target=m.consume,
            args=(handler_for(i),),
            kwargs={"cqrs_ids": [CQRS_ID], "on_ready": ready[i].set},
            daemon=True,
        )
        for i, m in enumerate(members)
    ]
    for thread in threads:
        thread.start()
    assert all(event.wait(40) for event in ready)
    time.sleep(1.0)  # let the second join's rebalance settle before producing
    producer = KafkaTransport(options)
    for rev in range(revisions):
        producer.produce_many([make_payload(pk, CQRS_ID, revision=rev) for pk in range(rows)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if len({(pk, rev) for _, pk, rev in seen}) == rows * revisions:
                break
        time.sleep(0.05)
    time.sleep(0.5)
    for m in members:
        m.stop()
    for thread in threads:
        thread.join(30)
    producer.close()
    for m in members:
        m.close()
    lost = rows * revisions - len({(pk, rev) for _, pk, rev in seen})
    assert lost == 0
    for pk in range(rows):
        order = [rev for _, p, rev in seen if p == pk]
        assert order == sorted(order), f"row {pk} out of order: {order}"
    assert {member for member, _, _ in seen} == {0, 1}, "both group members should get partitions"
