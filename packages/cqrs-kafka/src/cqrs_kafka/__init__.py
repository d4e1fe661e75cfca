"""Apache Kafka transport for cqrs-core (entry point `kafka`)."""

from __future__ import annotations

from cqrs_kafka.__about__ import __version__
from cqrs_kafka.transport import KafkaTransport

__all__ = ["KafkaTransport", "__version__"]
