"""Import path `dj_cqrs.transport.kafka.KafkaTransport` (this module never imports a Kafka client)."""

from __future__ import annotations

from dj_cqrs.transport import KafkaTransport

__all__ = ["KafkaTransport"]
