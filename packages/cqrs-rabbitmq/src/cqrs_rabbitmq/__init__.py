"""RabbitMQ transport for cqrs-core: `CQRS = {'transport': 'rabbitmq', 'url': 'amqp://...'}`."""

from __future__ import annotations

from cqrs_rabbitmq.__about__ import __version__
from cqrs_rabbitmq.transport import RabbitMQTransport

__all__ = ["RabbitMQTransport", "__version__"]
