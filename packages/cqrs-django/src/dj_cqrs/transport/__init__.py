"""Class-level transport API of django-cqrs (`RabbitMQTransport.produce(payload)`...).

These classes are thin facades: the work is done by the cqrs-core plugin instance that
`dj_cqrs.conf.get_transport()` builds from `settings.CQRS`. `BaseTransport` is the 3.x base
class that in-house transports and test doubles subclass (see `dj_cqrs.transport.base`), and
`current_transport` is the class `CQRS['transport']` selects, resolved when read. Importing this
module imports no broker client library.
"""

from __future__ import annotations

from typing import Any

from cqrs_core.payload import TransportPayload
from dj_cqrs.transport.base import BaseTransport

__all__ = [
    "BaseTransport",
    "KafkaTransport",
    "KombuTransport",
    "MemoryTransport",
    "RabbitMQTransport",
    "TransportFacade",
    "current_transport",
]


class TransportFacade(BaseTransport):
    """Facade over the cqrs-core transport configured in `CQRS['transport']`.

    Subclasses bind a transport name (`transport_name`), so
    `CQRS = {'transport': 'dj_cqrs.transport.RabbitMQTransport'}` keeps working and selects the
    `rabbitmq` plugin. Whichever facade is called, the configured transport does the work.
    """

    is_facade = True

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


class RabbitMQTransport(TransportFacade):
    """RabbitMQ over pika (`pip install "cqrs-django[rabbitmq]"`)."""

    transport_name = "rabbitmq"


class KombuTransport(TransportFacade):
    """Any kombu broker URL (`pip install "cqrs-django[kombu]"`)."""

    transport_name = "kombu"


class KafkaTransport(TransportFacade):
    """Apache Kafka over confluent-kafka (`pip install "cqrs-django[kafka]"`)."""

    transport_name = "kafka"


class MemoryTransport(TransportFacade):
    """In-process broker of cqrs-core, for tests."""

    transport_name = "memory"


_facades: dict[str, type] = {}


def current_transport_class() -> type:
    """`dj_cqrs.transport.current_transport`: the class 3.x code calls `produce`/`consume` on.

    The 3.x-style class itself, or the `dj_cqrs.transport` facade of the configured cqrs-core
    transport (a facade made on the fly for transports without a named one).

    Raises:
        ImproperlyConfigured, TransportNotFound, TransportLoadError: as `transport_class()`.
    """
    from dj_cqrs.conf import (
        LEGACY_TRANSPORTS,
        _import_path,
        legacy_transport_class,
        transport_class,
        transport_spec,
    )

    legacy_cls = legacy_transport_class()
    if legacy_cls is not None:
        return legacy_cls
    spec = transport_spec()
    if spec in LEGACY_TRANSPORTS:
        name = LEGACY_TRANSPORTS[spec]
    elif "." in spec or ":" in spec:
        target = _import_path(spec)
        if isinstance(target, type) and issubclass(target, TransportFacade):
            return target
        name = transport_class().name
    else:
        name = transport_class().name
    for facade in (
        RabbitMQTransport,
        KombuTransport,
        KafkaTransport,
        MemoryTransport,
    ):
        if facade.transport_name == name:
            return facade
    if name not in _facades:
        _facades[name] = type(
            f"{name.title().replace('_', '')}Transport",
            (TransportFacade,),
            {"transport_name": name, "__module__": __name__},
        )
    return _facades[name]


def __getattr__(name: str) -> Any:
    # `current_transport` (django-cqrs 3.x) is resolved on access, never at import time.
    if name == "current_transport":
        return current_transport_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
