"""Old import path `dj_cqrs.transport.rabbit_mq` (this module never imports pika).

`RabbitMQTransport` is the facade of the `rabbitmq` plugin (cqrs-rabbitmq); `BaseTransport` and
`LoggingMixin` are here because 3.x transports were written next to it with these imports.
"""

from __future__ import annotations

from dj_cqrs.transport import RabbitMQTransport
from dj_cqrs.transport.base import BaseTransport
from dj_cqrs.transport.mixins import LoggingMixin

__all__ = ["BaseTransport", "LoggingMixin", "RabbitMQTransport"]
