"""Class-level transport API of django-cqrs (`RabbitMQTransport.produce(payload)`...).

These classes are thin facades: the work is done by the cqrs-core plugin instance that
`dj_cqrs.conf.get_transport()` builds from `settings.CQRS`. Importing this module imports no
broker client library.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cqrs_core.payload import TransportPayload

__all__ = [
    "BaseTransport",
    "KafkaTransport",
    "KombuTransport",
    "MemoryTransport",
    "RabbitMQTransport",
]


class BaseTransport:
    """Facade over the transport configured in `CQRS['transport']`.

    Subclasses bind a transport name, so `CQRS = {'transport': 'dj_cqrs.transport.RabbitMQTransport'}`
    keeps working and selects the `rabbitmq` plugin.
    """

    transport_name: ClassVar[str | None] = None
    """Entry-point name of the cqrs-core transport this facade stands for (None: the configured one)."""

    @classmethod
    def produce(cls, payload: TransportPayload) -> None:
        """Send `payload` to replicas now, through the configured transport.

        Raises:
            cqrs_core.exceptions.PublishError: the broker did not accept it.
        """
        from dj_cqrs.conf import get_transport

        get_transport().produce(payload)

    @classmethod
    def consume(cls, cqrs_ids: Any = None) -> Any:
        """Run the replica consumer for `cqrs_ids` (all replica models when None); blocks."""
        from dj_cqrs.consumer import consume

        return consume(cqrs_ids)

    @classmethod
    def clean_connection(cls, *args: Any, **kwargs: Any) -> None:
        """Close the connections of this process/thread; the next use reconnects."""
        from dj_cqrs.conf import reset_transport

        reset_transport()


class RabbitMQTransport(BaseTransport):
    """RabbitMQ over pika (`pip install "cqrs-django[rabbitmq]"`)."""

    transport_name = "rabbitmq"


class KombuTransport(BaseTransport):
    """Any kombu broker URL (`pip install "cqrs-django[kombu]"`)."""

    transport_name = "kombu"


class KafkaTransport(BaseTransport):
    """Apache Kafka over confluent-kafka (`pip install "cqrs-django[kafka]"`)."""

    transport_name = "kafka"


class MemoryTransport(BaseTransport):
    """In-process broker of cqrs-core, for tests."""

    transport_name = "memory"
