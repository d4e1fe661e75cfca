"""`TransportMock`: the django-cqrs 3.x test double that hands a produced payload straight back.

With `CQRS = {'transport': 'dj_cqrs.transport.mock.TransportMock'}`, saving a master model
publishes nothing: the producer calls `TransportMock.produce(payload)` at commit, which returns
the payload, so tests can patch `produce` or `consume` and look at what was sent.
"""

from __future__ import annotations

from typing import Any

from dj_cqrs.transport.base import BaseTransport

__all__ = ["TransportMock"]


class TransportMock(BaseTransport):
    """Loops `produce(payload)` back into `consume(payload)`, which returns it unchanged."""

    @staticmethod
    def produce(payload: Any) -> Any:
        return TransportMock.consume(payload)

    @staticmethod
    def consume(payload: Any = None, **kwargs: Any) -> Any:
        return payload

    @staticmethod
    def clean_connection(*args: Any, **kwargs: Any) -> None:
        """Nothing to close."""
