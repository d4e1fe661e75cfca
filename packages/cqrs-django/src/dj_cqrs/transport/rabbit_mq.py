"""Old import path `dj_cqrs.transport.rabbit_mq.RabbitMQTransport`."""

from __future__ import annotations

from dj_cqrs.transport import RabbitMQTransport

__all__ = ["RabbitMQTransport"]
