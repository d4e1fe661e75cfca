"""An idempotent producer whose sends return only once every delivery report is in."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer

from cqrs_core.exceptions import PublishError
from cqrs_kafka.headers import Headers


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    topic: str
    value: bytes
    key: str | None = None
    headers: Headers = dataclasses.field(default_factory=list)


class _Reports:
    """Delivery reports of one `send` call."""

    def __init__(self, expected: int) -> None:
        self.pending = expected
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        with self._lock:
            self.pending -= 1
            if err is not None:
                self.errors.append(f"{msg.topic()}: {err.str()}")


class Publisher:
    """Wraps `confluent_kafka.Producer` with acks=all, idempotence and awaited reports."""

    def __init__(self, config: dict[str, Any], *, timeout: float) -> None:
        self.timeout = timeout
        defaults = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # same partition for a key as Java clients
            "message.timeout.ms": int(timeout * 1000),
        }
        self.producer = Producer({**defaults, **config})

    def send(self, records: Sequence[Record]) -> None:
        """Produce `records` in librdkafka batches and wait for every delivery report.

        Raises:
            PublishError: a record was not acknowledged by all in-sync replicas in time.
        """
        if not records:
            return
        reports = _Reports(len(records))
        deadline = time.monotonic() + self.timeout + 5
        for record in records:
            while True:
                try:
                    self.producer.produce(
                        record.topic,
                        value=record.value,
                        key=record.key,
                        headers=record.headers,
                        on_delivery=reports,
                    )
                    break
                except BufferError:  # local queue full: let librdkafka drain it
                    self._serve(deadline)
                except Exception as exc:
                    raise PublishError(
                        f"Kafka refused a message for {record.topic!r}: {exc}"
                    ) from exc
        while reports.pending > 0:
            # flush() sends at once (no linger) and serves delivery reports.
            self.producer.flush(min(0.5, max(deadline - time.monotonic(), 0.01)))
            if reports.pending > 0 and time.monotonic() > deadline:
                self._serve(deadline)
        if reports.errors:
            raise PublishError(
                f"{len(reports.errors)} of {len(records)} message(s) were not delivered: "
                f"{reports.errors[0]}"
            )

    def _serve(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise PublishError(
                f"no delivery report from Kafka within {self.timeout} s: is the broker reachable? "
                "(raise CQRS['kafka']['publish_timeout'] for slow clusters)"
            )
        self.producer.poll(0.05)

    def close(self, timeout: float = 5.0) -> None:
        self.producer.flush(timeout)
