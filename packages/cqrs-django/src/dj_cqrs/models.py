"""Models of the `dj_cqrs` app itself: replica tombstones and the master outbox."""

from __future__ import annotations

from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.replica.tombstone import Tombstone

__all__ = ["OutboxEvent", "Tombstone"]
