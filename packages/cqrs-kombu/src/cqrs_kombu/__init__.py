"""The kombu transport for cqrs-core: `CQRS = {'transport': 'kombu', 'url': ...}`."""

from __future__ import annotations

from cqrs_kombu.__about__ import __version__
from cqrs_kombu.transport import KombuTransport

__all__ = ["KombuTransport", "__version__"]
