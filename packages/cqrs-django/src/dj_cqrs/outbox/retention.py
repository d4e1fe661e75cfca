"""Deleting sent rows kept for `keep_days`, and the numbers `cqrs_outbox` shows."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from django.db.models import Count, Min
from django.utils import timezone

from dj_cqrs.outbox.models import OutboxEvent

_CHUNK = 5000


def purge(using: str, keep_days: float, *, now: datetime.datetime | None = None) -> int:
    """Delete rows sent more than `keep_days` ago (in chunks); return how many."""
    cutoff = (now or timezone.now()) - datetime.timedelta(days=keep_days)
    manager = OutboxEvent.objects.using(using)
    deleted = 0
    while True:
        ids = list(
            manager.filter(sent_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:_CHUNK]
        )
        if not ids:
            return deleted
        deleted += manager.filter(id__in=ids)._raw_delete(using)


@dataclasses.dataclass(frozen=True)
class Backlog:
    """What is waiting in the outbox of one database."""

    pending: int
    oldest: datetime.datetime | None
    sent_kept: int
    by_cqrs_id: dict[str, int]
    failing: int
    """Pending rows that a fast path or relay already failed to send at least once."""
    set_aside: int = 0
    """Rows the broker refused, waiting for `cqrs_outbox retry` or `drop` (in `pending` too)."""

    def oldest_age(self, now: datetime.datetime | None = None) -> datetime.timedelta | None:
        if self.oldest is None:
            return None
        return (now or timezone.now()) - self.oldest


def backlog(using: str) -> Backlog:
    manager = OutboxEvent.objects.using(using)
    pending = manager.filter(sent_at__isnull=True)
    stats = pending.aggregate(count=Count("id"), oldest=Min("created_at"))
    by_id = dict(
        pending.order_by()
        .values_list("cqrs_id")
        .annotate(n=Count("id"))
        .values_list("cqrs_id", "n")
    )
    return Backlog(
        pending=stats["count"] or 0,
        oldest=stats["oldest"],
        sent_kept=manager.filter(sent_at__isnull=False).count(),
        by_cqrs_id=by_id,
        failing=pending.filter(attempts__gt=0).count(),
        set_aside=pending.filter(set_aside_at__isnull=False).count(),
    )


def set_aside_rows(using: str) -> list[OutboxEvent]:
    """The rows set aside, oldest first (for `cqrs_outbox set-aside`)."""
    return list(
        OutboxEvent.objects.using(using)
        .filter(sent_at__isnull=True, set_aside_at__isnull=False)
        .order_by("id")
    )


def retry(using: str, ids: Sequence[int] | None) -> int:
    """Put set-aside rows (`ids`, or all with None) back in line for the relay; how many."""
    rows = OutboxEvent.objects.using(using).filter(sent_at__isnull=True, set_aside_at__isnull=False)
    if ids is not None:
        rows = rows.filter(id__in=list(ids))
    from dj_cqrs.outbox import routing

    routing.forget()  # in this process; relays probe every target again after a refusal anyway
    return rows.update(set_aside_at=None, claimed_by="", claimed_until=None)


def drop(using: str, ids: Sequence[int]) -> int:
    """Delete unsent rows `ids` (their events are never sent); how many."""
    return (
        OutboxEvent.objects.using(using).filter(id__in=list(ids), sent_at__isnull=True).delete()[0]
    )
