"""Old import path `dj_cqrs.transport.kombu` (this module never imports kombu).

`KombuTransport` is the facade of the `kombu` plugin (cqrs-kombu); `BaseTransport` and
`LoggingMixin` are here because 3.x transports were written next to it with these imports.
"""

from __future__ import annotations

from dj_cqrs.transport import KombuTransport
from dj_cqrs.transport.base import BaseTransport
from dj_cqrs.transport.mixins import LoggingMixin

__all__ = ["BaseTransport", "KombuTransport", "LoggingMixin"]
