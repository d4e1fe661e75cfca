"""How long tombstones are kept, and the periodic purge that `cqrs_consume` runs.

A tombstone stops a late SAVE from re-creating a deleted row, so it may go only once no
message older than it can still arrive: the message TTL (a message is never applied after its
`expires`), plus the longest retry period, plus a margin for clocks and restarts. With no TTL or
unlimited retries such a message can always arrive, so nothing is purged automatically unless
`CQRS['replica']['tombstone_retention']` says so.
"""

from __future__ import annotations

import datetime
import logging
import random
import time
from collections.abc import Collection, Iterable

from django.db import DatabaseError, router
from django.utils import timezone

from dj_cqrs.replica.tombstone import Tombstone

logger = logging.getLogger("django-cqrs")

RETENTION_KEY = "tombstone_retention"
MARGIN = 3600.0
"""Seconds added to TTL + retries: clock skew between services, restarts, slow consumers."""
PURGE_EVERY = 3600.0
"""Seconds between two automatic purges in one consumer process (jittered)."""
BATCH_SIZE = 1000
"""Rows per DELETE: short statements, so the table is never locked for long."""
TICK_BUDGET = 1.0
"""Seconds one tick may spend deleting before it lets the consumer go on (resumed next tick)."""


def default_retention() -> float | None:
    """TTL + the sum of every retry delay + `MARGIN`; None when a message may live forever."""
    from dj_cqrs.conf import message_ttl
    from dj_cqrs.replica.mixins import retry_policy

    ttl = message_ttl()
    policy = retry_policy()
    if ttl is None or policy.max_retries is None:
        return None
    retrying = sum(float(policy.delay_for(n)) for n in range(policy.max_retries))
    return float(ttl) + retrying + MARGIN


def retention() -> float | None:
    """Seconds a tombstone is kept: the setting if present (None: forever), else the default.

    Raises:
        ValueError: the setting is not a positive number or None.
    """
    from dj_cqrs.conf import replica_settings

    section = replica_settings()
    if RETENTION_KEY not in section:
        return default_retention()
    value = section[RETENTION_KEY]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(
            f"CQRS['replica']['{RETENTION_KEY}'] must be a number of seconds > 0 or None "
            f"(keep tombstones forever), got {value!r}."
        )
    return float(value)


def cutoff(older_than: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(seconds=older_than)


def replica_databases(cqrs_ids: Iterable[str] | None = None) -> list[str]:
    """Database aliases that replica models (of `cqrs_ids`; None: all) write tombstones to."""
    from dj_cqrs.registries import ReplicaRegistry

    aliases = set()
    for cqrs_id, model in ReplicaRegistry.models.items():
        if cqrs_ids is not None and cqrs_id not in cqrs_ids:
            continue
        if getattr(model, "_meta", None) is None or getattr(model, "CQRS_NO_DB_OPERATIONS", False):
            continue
        aliases.add(router.db_for_write(model))
    return sorted(aliases)


def purge(
    using: str,
    before: datetime.datetime,
    *,
    batch_size: int | None = None,
    deadline: float | None = None,
) -> tuple[int, bool]:
    """Delete tombstones written before `before` in batches; (deleted, finished).

    Stops early (finished False) once `time.monotonic()` passes `deadline`.
    """
    batch_size = batch_size or BATCH_SIZE
    old = Tombstone.objects.using(using).filter(deleted_at__lt=before)
    deleted = 0
    while True:
        keys = list(old.order_by("deleted_at").values_list("pk", flat=True)[:batch_size])
        if not keys:
            return deleted, True
        count, _ = Tombstone.objects.using(using).filter(pk__in=keys).delete()
        deleted += count
        if len(keys) < batch_size:
            return deleted, True
        if deadline is not None and time.monotonic() >= deadline:
            return deleted, False


class TombstonePurger:
    """Purges expired tombstones from a consumer's `on_tick`, at most once per `PURGE_EVERY`.

    Every worker runs one; the first purge comes after a random part of the period, so that
    the workers of a service (and services sharing a database) do not all delete at once.
    """

    def __init__(self, databases: Collection[str], *, every: float | None = None) -> None:
        self.databases = list(databases)
        self.every = PURGE_EVERY if every is None else every
        self.next_at = time.monotonic() + random.uniform(0.1, 1.0) * self.every  # noqa: S311
        self.pending: list[str] = []
        self.deleted = 0

    @classmethod
    def for_cqrs_ids(cls, cqrs_ids: Iterable[str]) -> TombstonePurger:
        return cls(replica_databases(cqrs_ids))

    def tick(self) -> None:
        """Delete for at most `TICK_BUDGET` seconds when a purge is due or unfinished."""
        if not self.databases:
            return
        now = time.monotonic()
        if not self.pending:
            if now < self.next_at:
                return
            self.next_at = now + self.every
            self.pending = list(self.databases)
            self.deleted = 0
        try:
            keep = retention()
        except ValueError as exc:
            logger.error("Tombstones are not purged: %s", exc)
            self.pending = []
            return
        if keep is None:
            self.pending = []
            return
        before = cutoff(keep)
        deadline = now + TICK_BUDGET
        while self.pending:
            using = self.pending[0]
            try:
                deleted, finished = purge(using, before, deadline=deadline)
            except DatabaseError as exc:
                logger.warning("Could not purge tombstones on %r (%s); next try later.", using, exc)
                finished, deleted = True, 0
            self.deleted += deleted
            if not finished:
                return
            self.pending.pop(0)
        if self.deleted:
            logger.info("Purged %d tombstone(s) older than %.0f s.", self.deleted, keep)
