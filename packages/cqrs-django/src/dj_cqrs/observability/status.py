"""What the admin status page shows, read from the database (and, briefly, the broker).

Kept apart from the view so that it can be tested, and reused, without a request. Master:
the outbox (unsent rows, set-aside rows, age of the oldest unsent row, rows sent recently when
`keep_days` keeps them). Replica: per registered CQRS_ID, the newest event applied (the row or
tombstone with the newest master time `cqrs_updated`) and its age, and the number of dead
letters when the transport can list them within a short timeout. Nothing here waits for a
broker longer than `timeout`: a page must answer while the broker is down.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db.models import Count, Min, Q
from django.utils import timezone

logger = logging.getLogger("django-cqrs")

RATE_WINDOWS = (60, 300)
"""Seconds over which the publish rate is counted (sent rows, when they are kept)."""
DEAD_LETTER_CAP = 100
"""The page counts dead letters up to this many ("more than 100" after that)."""
DEAD_LETTER_TIMEOUT = 2.0
"""Seconds the page waits for the broker's dead letters before showing "unavailable"."""
DEAD_LETTER_HINT = "manage.py cqrs_dead_letters dump"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CqrsIdBacklog:
    """Unsent outbox rows of one CQRS_ID."""

    cqrs_id: str
    unsent: int
    set_aside: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStatus:
    """The master's outbox.

    Attributes:
        unsent: Rows not sent yet, set-aside ones included (the `cqrs_outbox_backlog_rows`
            gauge).
        set_aside: Unsent rows the broker refused, waiting for `cqrs_outbox retry`.
        oldest_unsent: `created_at` of the oldest unsent row (None when there is none).
        oldest_unsent_age: Its age in seconds (the `cqrs_outbox_oldest_pending_age_seconds`
            gauge; 0 when there is none).
        sent_recently: {window in seconds: rows sent within it}; empty when sent rows are not
            kept (`keep_days` 0), since the rate cannot be read from the table then.
        keep_days: `CQRS['master']['outbox']['keep_days']`.
        by_cqrs_id: Unsent rows per CQRS_ID, most first.
    """

    unsent: int
    set_aside: int
    oldest_unsent: datetime.datetime | None
    oldest_unsent_age: float
    sent_recently: dict[int, int]
    keep_days: float
    by_cqrs_id: list[CqrsIdBacklog]

    @property
    def rates(self) -> dict[int, float]:
        """{window: rows sent per second over it} (empty when sent rows are not kept)."""
        return {window: count / window for window, count in self.sent_recently.items()}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaModelStatus:
    """The newest event applied to one replica model.

    Attributes:
        cqrs_id: The model's CQRS_ID.
        model: `app_label.ModelName`.
        stored: False for models that keep no rows of their own (`CQRS_NO_DB_OPERATIONS`, raw
            replicas): nothing below can be read for them.
        last_pk: Primary key of the newest applied row or tombstone.
        last_revision: Its `cqrs_revision`.
        last_updated: Its `cqrs_updated` (the master's time of the event).
        last_was_delete: The newest event applied was a DELETE (a tombstone).
        age: Seconds from `last_updated` to now: how far behind the replica is if the master
            kept writing; it also grows while the master writes nothing (see the lag metric).
    """

    cqrs_id: str
    model: str
    stored: bool
    last_pk: str | None = None
    last_revision: int | None = None
    last_updated: datetime.datetime | None = None
    last_was_delete: bool = False
    age: float | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetterStatus:
    """How many dead letters this replica's queue holds, if the broker said so in time.

    Attributes:
        count: The number (capped at `DEAD_LETTER_CAP`); None when unknown.
        more: There are more than `count`.
        error: Why the count is unknown ("unavailable: ..."), or None.
        hint: The command that lists them.
    """

    count: int | None
    more: bool = False
    error: str | None = None
    hint: str = DEAD_LETTER_HINT


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """Everything the status page shows; a side is None when this service is not one."""

    now: datetime.datetime
    outbox: OutboxStatus | None
    replicas: list[ReplicaModelStatus]
    dead_letters: DeadLetterStatus | None


def gather(
    using: str = "default",
    *,
    dead_letters: bool = True,
    timeout: float | None = None,
    now: datetime.datetime | None = None,
) -> Status:
    """The whole status: the outbox if master models are registered, replicas if replica
    models are; `dead_letters=False` skips the broker."""
    from dj_cqrs.registries import MasterRegistry, ReplicaRegistry

    now = now or timezone.now()
    outbox = outbox_status(using, now=now) if MasterRegistry.models else None
    replicas = replica_status(now=now) if ReplicaRegistry.models else []
    letters = None
    if ReplicaRegistry.models and dead_letters:
        letters = dead_letter_status(timeout)
    return Status(now=now, outbox=outbox, replicas=replicas, dead_letters=letters)


def outbox_status(using: str = "default", *, now: datetime.datetime | None = None) -> OutboxStatus:
    """The outbox of database `using`: two aggregates over the unsent rows (the pending index)
    and, when sent rows are kept, one count per rate window (the `sent_at` index)."""
    from dj_cqrs.outbox.models import OutboxEvent
    from dj_cqrs.outbox.settings import outbox_settings

    now = now or timezone.now()
    unsent = OutboxEvent.objects.using(using).filter(sent_at__isnull=True).order_by()
    totals = unsent.aggregate(
        n=Count("id"),
        aside=Count("id", filter=Q(set_aside_at__isnull=False)),
        oldest=Min("created_at"),
    )
    per_id = (
        unsent.values("cqrs_id")
        .annotate(n=Count("id"), aside=Count("id", filter=Q(set_aside_at__isnull=False)))
        .order_by("-n", "cqrs_id")
    )
    keep_days = outbox_settings().keep_days
    sent_recently: dict[int, int] = {}
    if keep_days > 0:
        for window in RATE_WINDOWS:
            sent_recently[window] = (
                OutboxEvent.objects.using(using)
                .filter(sent_at__gt=now - datetime.timedelta(seconds=window), sent_at__lte=now)
                .count()
            )
    oldest = totals["oldest"]
    return OutboxStatus(
        unsent=int(totals["n"] or 0),
        set_aside=int(totals["aside"] or 0),
        oldest_unsent=oldest,
        oldest_unsent_age=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        sent_recently=sent_recently,
        keep_days=keep_days,
        by_cqrs_id=[
            CqrsIdBacklog(cqrs_id=row["cqrs_id"], unsent=row["n"], set_aside=row["aside"])
            for row in per_id
        ],
    )


def replica_status(*, now: datetime.datetime | None = None) -> list[ReplicaModelStatus]:
    """Per registered replica model, the newest applied row or tombstone (by `cqrs_updated`)."""
    from dj_cqrs.registries import ReplicaRegistry

    now = now or timezone.now()
    return [
        _model_status(cqrs_id, model, now)
        for cqrs_id, model in sorted(ReplicaRegistry.models.items())
    ]


def _model_status(cqrs_id: str, model: Any, now: datetime.datetime) -> ReplicaModelStatus:
    from dj_cqrs.replica.tombstone import Tombstone

    meta = getattr(model, "_meta", None)  # raw replicas are not Django models
    if meta is None:
        label = f"{model.__module__}.{model.__qualname__}"
        return ReplicaModelStatus(cqrs_id=cqrs_id, model=label, stored=False)
    label = meta.label
    try:
        meta.get_field("cqrs_updated")
    except FieldDoesNotExist:
        return ReplicaModelStatus(cqrs_id=cqrs_id, model=label, stored=False)
    if getattr(model, "CQRS_NO_DB_OPERATIONS", False) or meta.abstract:
        return ReplicaModelStatus(cqrs_id=cqrs_id, model=label, stored=False)
    row = (
        model._default_manager.filter(cqrs_updated__isnull=False)
        .order_by("-cqrs_updated", "-pk")
        .values_list("pk", "cqrs_revision", "cqrs_updated")
        .first()
    )
    tombstone = (
        Tombstone.objects.db_manager(model._default_manager.db)
        .filter(cqrs_id=cqrs_id, cqrs_updated__isnull=False)
        .order_by("-cqrs_updated", "-id")
        .values_list("instance_pk", "cqrs_revision", "cqrs_updated")
        .first()
    )
    newest, deleted = row, False
    if tombstone is not None and (row is None or tombstone[2] > row[2]):
        newest, deleted = tombstone, True
    if newest is None:
        return ReplicaModelStatus(cqrs_id=cqrs_id, model=label, stored=True)
    pk, revision, updated = newest
    return ReplicaModelStatus(
        cqrs_id=cqrs_id,
        model=label,
        stored=True,
        last_pk=str(pk),
        last_revision=revision,
        last_updated=updated,
        last_was_delete=deleted,
        age=max((now - updated).total_seconds(), 0.0),
    )


def dead_letter_status(timeout: float | None = None) -> DeadLetterStatus:
    """This replica's dead letters, counted up to `DEAD_LETTER_CAP` within `timeout` seconds.

    A transport of its own, in a helper thread: the process's transport (used to publish) is
    left alone, and a broker that does not answer costs the page `timeout` seconds at most
    (the thread is a daemon and ends with the broker's own timeout).
    """
    from cqrs_core.transports.base import Capability
    from dj_cqrs import conf

    if timeout is None:
        timeout = DEAD_LETTER_TIMEOUT

    try:
        cls = conf.transport_class()
    except Exception as exc:  # noqa: BLE001 (shown on the page)
        return DeadLetterStatus(count=None, error=f"unavailable: {exc}")
    if Capability.DEAD_LETTER not in cls.capabilities:
        return DeadLetterStatus(
            count=None, error=f"unavailable: the {cls.name!r} transport keeps no dead letters"
        )
    result: dict[str, Any] = {}

    def count() -> None:
        transport = None
        try:
            transport = cls(conf.transport_options())
            result["letters"] = len(transport.dead_letters(limit=DEAD_LETTER_CAP + 1))
        except BaseException as exc:  # noqa: BLE001 (reported by the caller)
            result["error"] = exc
        finally:
            if transport is not None:
                try:
                    transport.close()
                except Exception:  # noqa: BLE001 (the count matters more)
                    logger.warning("Closing the status page's transport failed", exc_info=True)

    worker = threading.Thread(target=count, name="cqrs-status-dead-letters", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return DeadLetterStatus(
            count=None, error=f"unavailable: the broker did not answer within {timeout:g} s"
        )
    if "error" in result:
        return DeadLetterStatus(count=None, error=f"unavailable: {result['error']}")
    letters = int(result["letters"])
    return DeadLetterStatus(count=min(letters, DEAD_LETTER_CAP), more=letters > DEAD_LETTER_CAP)
