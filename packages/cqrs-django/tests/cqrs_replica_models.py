"""Short import path for the replica test models."""

from __future__ import annotations

from cqrs_testproject.replica_app.models import (
    AuthorRef,
    DirectSyncOnly,
    Flaky,
    Item,
    ProductRef,
    RawEvents,
    VoucherRef,
)

__all__ = ["AuthorRef", "DirectSyncOnly", "Flaky", "Item", "ProductRef", "RawEvents", "VoucherRef"]
