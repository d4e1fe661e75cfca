"""Creating the topics of the layout when they are missing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cqrs_core.exceptions import TransportError
from cqrs_kafka.settings import KafkaSettings

logger = logging.getLogger("django-cqrs")


class TopicManager:
    """Create topics once per process and remember which exist."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._admin: AdminClient | None = None
        self._known: set[str] = set()
        self._lock = threading.Lock()

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self.settings.client_config("admin"))
        return self._admin

    def ensure(
        self, topics: Iterable[str], *, timeout: float, partitions: int | None = None
    ) -> None:
        """Create the topics of `topics` that do not exist yet.

        Raises:
            TransportError: the broker did not answer within `timeout` or refused.
        """
        with self._lock:
            missing = sorted(set(topics) - self._known)
            if not missing or not self.settings.create_topics:
                self._known.update(missing)
                return
            new = [
                NewTopic(
                    t,
                    num_partitions=partitions or self.settings.partitions,
                    replication_factor=self.settings.replication_factor,
                )
                for t in missing
            ]
            try:
                futures = self.admin.create_topics(new, request_timeout=timeout)
            except KafkaException as exc:
                raise TransportError(f"cannot create Kafka topics {missing}: {exc}") from exc
            for topic, future in futures.items():
                try:
                    future.result(timeout=timeout + 1)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise TransportError(f"cannot create Kafka topic {topic!r}: {exc}") from exc
                except Exception as exc:  # concurrent.futures.TimeoutError
                    raise TransportError(
                        f"Kafka did not confirm topic {topic!r} within {timeout} s ({exc!r}); "
                        f"check CQRS bootstrap servers {self.settings.bootstrap_servers!r}."
                    ) from exc
                self._known.add(topic)

    def delete(self, topics: Iterable[str], *, timeout: float = 10.0) -> None:
        """Delete `topics` (tests and tooling); missing ones are ignored."""
        names = sorted(set(topics))
        if not names:
            return
        for future in self.admin.delete_topics(names, request_timeout=timeout).values():
            try:
                future.result(timeout=timeout + 1)
            except Exception as exc:  # noqa: BLE001 - already gone: nothing to do
                logger.debug("CQRS kafka: deleting a topic: %s", exc)
        with self._lock:
            self._known.difference_update(names)
