"""Transport contract, discovery and the in-memory reference transport."""

from __future__ import annotations

from cqrs_core.transports._discovery import (
    GROUP,
    available_transports,
    get_transport_class,
    origin,
    register_transport,
    unregister_transport,
)
from cqrs_core.transports.base import TRANSPORT_API_VERSION, BaseTransport, Capability

__all__ = [
    "GROUP",
    "TRANSPORT_API_VERSION",
    "BaseTransport",
    "Capability",
    "available_transports",
    "get_transport_class",
    "origin",
    "register_transport",
    "unregister_transport",
]
