"""Old import path `dj_cqrs.transport.kombu.KombuTransport` (this module never imports kombu)."""

from __future__ import annotations

from dj_cqrs.transport import KombuTransport

__all__ = ["KombuTransport"]
