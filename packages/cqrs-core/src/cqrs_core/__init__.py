"""Framework-agnostic core of CQRS replication: payload, codec, registries, transports.

Nothing here imports Django; `dj_cqrs` (distribution `cqrs-django`) builds on it.
"""

from __future__ import annotations

from cqrs_core.__about__ import __version__
from cqrs_core.constants import SignalType
from cqrs_core.exceptions import (
    ConfigurationError,
    CQRSError,
    MalformedMessage,
    PublishError,
    TransportClosed,
    TransportError,
    TransportLoadError,
    TransportNotFound,
)
from cqrs_core.messages import DeadLetter, Handler, Inbound, Outcome, OutcomeKind, Outgoing
from cqrs_core.options import CommonOptions
from cqrs_core.payload import TransportPayload
from cqrs_core.registries import DuplicateCQRSId, Registry
from cqrs_core.retry import RetryPolicy
from cqrs_core.transports import (
    TRANSPORT_API_VERSION,
    BaseTransport,
    Capability,
    available_transports,
    get_transport_class,
    register_transport,
)

__all__ = [
    "TRANSPORT_API_VERSION",
    "BaseTransport",
    "CQRSError",
    "Capability",
    "CommonOptions",
    "ConfigurationError",
    "DeadLetter",
    "DuplicateCQRSId",
    "Handler",
    "Inbound",
    "MalformedMessage",
    "Outcome",
    "OutcomeKind",
    "Outgoing",
    "PublishError",
    "Registry",
    "RetryPolicy",
    "SignalType",
    "TransportClosed",
    "TransportError",
    "TransportLoadError",
    "TransportNotFound",
    "TransportPayload",
    "__version__",
    "available_transports",
    "get_transport_class",
    "register_transport",
]
