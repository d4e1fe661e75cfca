"""Short import path for the replica test models."""

from __future__ import annotations

from cqrs_testproject.replica_app.models import (
    ApplyLog,
    AuthorRef,
    DirectSyncOnly,
    Flaky,
    Item,
    ProductRef,
    RawEvents,
    TallyRef,
    TypedRef,
    VoucherRef,
)

__all__ = [
    "ApplyLog",
    "AuthorRef",
    "DirectSyncOnly",
    "Flaky",
    "Item",
    "ProductRef",
    "RawEvents",
    "TallyRef",
    "TypedRef",
    "VoucherRef",
]
