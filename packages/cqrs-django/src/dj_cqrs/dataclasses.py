"""`TransportPayload` under its django-cqrs import path (the same class as in cqrs-core)."""

from __future__ import annotations

from cqrs_core.payload import TransportPayload

__all__ = ["TransportPayload"]
