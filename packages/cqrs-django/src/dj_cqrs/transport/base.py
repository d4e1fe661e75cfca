"""`dj_cqrs.transport.BaseTransport`: the class-level transport contract of django-cqrs 3.x.

Services written for 3.x subclass it with static `produce`/`consume`/`clean_connection` (test
doubles such as `TransportMock`, in-house transports) and name the subclass in
`CQRS['transport']`; `dj_cqrs.conf.legacy_transport_class()` recognises them and the producer
and `cqrs_consume` call them as 3.x did. Our own facades (`RabbitMQTransport`...) derive from it
too, so `issubclass(current_transport, BaseTransport)` keeps holding.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["BaseTransport"]


class BaseTransport:
    """Base of every class named in `CQRS['transport']` the django-cqrs 3.x way.

    Subclasses override the static methods below. Example::

        CQRS = {'transport': 'dj_cqrs.transport.rabbit_mq.RabbitMQTransport'}
    """

    transport_name: ClassVar[str | None] = None
    """Entry-point name of the cqrs-core plugin a facade stands for; None for 3.x-style classes."""

    is_facade: ClassVar[bool] = False
    """True for `dj_cqrs.transport.TransportFacade` (checked by `dj_cqrs.conf`, which does not
    import the facades: they import it)."""

    consumers: ClassVar[dict[Any, Any]] = {}
    """Kept because 3.x subclasses may store their consumers here (shared by every subclass)."""

    @staticmethod
    def produce(payload: Any) -> Any:
        """Send `payload` (a `dj_cqrs.dataclasses.TransportPayload`) to the replicas."""
        raise NotImplementedError("A CQRS transport must implement produce(payload).")

    @staticmethod
    def consume(*args: Any, **kwargs: Any) -> Any:
        """Receive events from masters and apply them (`cqrs_consume` passes `cqrs_ids=`)."""
        raise NotImplementedError("A CQRS transport must implement consume(*args, **kwargs).")

    @staticmethod
    def clean_connection(*args: Any, **kwargs: Any) -> None:
        """Close the connections the transport holds; the next use reconnects."""
        raise NotImplementedError("A CQRS transport must implement clean_connection().")
