"""`ReplicaManager`: applies SAVE, SYNC and DELETE to replica rows, safely under concurrency.

Every apply runs in one transaction that first takes a lock on the (CQRS_ID, pk) key, then
reads the row (and its tombstone) and writes. On PostgreSQL the key lock is a transaction
advisory lock, so two workers can never interleave on one key, even while the row does not
exist yet; the row is also read with `SELECT ... FOR UPDATE`. On SQLite a write transaction
locks the whole database; a concurrent writer fails with "database is locked" and its message
is retried, never half-applied. Other databases rely on `SELECT ... FOR UPDATE` plus the unique
primary key (a lost insert race turns into an update).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, models, router, transaction
from django.utils import timezone

from dj_cqrs.replica import rules
from dj_cqrs.replica.mapping import (
    map_previous_data,
    map_save_data,
    parse_revision,
    parse_updated,
    pk_from_delete,
    to_pk,
)
from dj_cqrs.replica.rules import Mark
from dj_cqrs.replica.tombstone import Tombstone

logger = logging.getLogger("django-cqrs")


class Skipped:
    """Result of an apply that was deliberately not done (truthy: the message is handled)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"Skipped({self.reason!r})"


class ReplicaManager(models.Manager[Any]):
    """Manager of replica models (`Model.cqrs`)."""

    # -- SAVE / SYNC ------------------------------------------------------------------------

    def save_instance(
        self,
        master_data: Mapping[str, Any],
        previous_data: Mapping[str, Any] | None = None,
        sync: bool = False,
        meta: Any = None,
    ) -> Any:
        """Create or update the row from CQRS master instance data.

        Returns:
            The model instance (also when the event was a duplicate or out of order), or a
            truthy `Skipped` when a tombstone shows the event is about a deleted row.

        Raises:
            BadData: the data does not fit the model (missing keys, bad values).
        """
        model = self.model
        mapped = map_save_data(model, master_data)
        previous = map_previous_data(model, previous_data)
        pk_name = model._meta.pk.name
        pk = to_pk(model, mapped[pk_name])
        mapped[pk_name] = pk
        using = router.db_for_write(model)
        # savepoint=False: inside the consumer's per-message savepoint a second one is waste.
        with transaction.atomic(using=using, savepoint=False):
            lock_key(using, model.CQRS_ID, pk)
            instance = self._locked_row(using, pk)
            if instance is not None:
                return self._update_checked(instance, mapped, previous, sync, meta, using)
            tombstone = _tombstone(using, model.CQRS_ID, pk)
            event = Mark(mapped["cqrs_revision"], mapped["cqrs_updated"])
            if tombstone is not None and rules.older_than_tombstone(event, _mark(tombstone)):
                logger.info(
                    "CQRS %s for deleted row skipped: pk = %s, cqrs_revision = %s, deleted at "
                    "revision %s (%s).",
                    "SYNC" if sync else "SAVE",
                    pk,
                    event.revision,
                    tombstone.cqrs_revision,
                    model.CQRS_ID,
                )
                return Skipped("row was deleted after this event")
            return self._create_or_update(mapped, previous, sync, meta, using)

    def _locked_row(self, using: str, pk: Any) -> Any:
        return (
            self.model._default_manager.db_manager(using).select_for_update().filter(pk=pk).first()
        )

    def _create_or_update(
        self, mapped: dict[str, Any], previous: Any, sync: bool, meta: Any, using: str
    ) -> Any:
        from django.db import connections

        if connections[using].vendor == "postgresql":  # the advisory lock already excludes races
            return self.create_instance(mapped, previous, sync, meta)
        try:
            with transaction.atomic(using=using):
                return self.create_instance(mapped, previous, sync, meta)
        except IntegrityError:
            # Another worker created the row between our read and our insert: update it instead.
            instance = self._locked_row(using, mapped[self.model._meta.pk.name])
            if instance is None:
                raise
            return self._update_checked(instance, mapped, previous, sync, meta, using)

    def _update_checked(
        self,
        instance: Any,
        mapped: dict[str, Any],
        previous: Any,
        sync: bool,
        meta: Any,
        using: str,
    ) -> Any:
        incoming = Mark(mapped["cqrs_revision"], mapped["cqrs_updated"])
        stored_updated = instance.cqrs_updated
        if (
            not sync
            and incoming.updated is not None
            and stored_updated is not None
            and incoming.updated < stored_updated
            and (incoming.revision or 0) > instance.cqrs_revision
        ):
            # A higher revision that is older than the row: maybe a late event of a previous
            # life of this key (deleted, then re-created). Only then is the tombstone read.
            tombstone = _tombstone(using, self.model.CQRS_ID, instance.pk)
            if (
                tombstone is not None
                and rules.older_than_tombstone(incoming, _mark(tombstone))
                and rules.row_is_newer_life(row_updated=stored_updated, tombstone=_mark(tombstone))
            ):
                logger.info(
                    "CQRS event of a deleted, re-created row skipped: pk = %s, cqrs_revision = "
                    "%s (%s).",
                    instance.pk,
                    incoming.revision,
                    self.model.CQRS_ID,
                )
                return instance
        return self.update_instance(instance, mapped, previous, sync, meta)

    def create_instance(
        self,
        mapped_data: dict[str, Any],
        previous_data: Mapping[str, Any] | None = None,
        sync: bool = False,
        meta: Any = None,
    ) -> Any:
        """Create the row from mapped data through the model's `cqrs_create`."""
        kwargs = {"meta": meta} if self.model.CQRS_META else {}
        return self.model.cqrs_create(sync, mapped_data, previous_data, **kwargs)

    def update_instance(
        self,
        instance: Any,
        mapped_data: dict[str, Any],
        previous_data: Mapping[str, Any] | None = None,
        sync: bool = False,
        meta: Any = None,
    ) -> Any:
        """Apply the revision rules, then update through the instance's `cqrs_update`.

        A SAVE with the stored revision is a duplicate and one with a lower revision is out of
        order: both are skipped (the instance is returned unchanged). A revision more than one
        ahead is applied with a warning about lost events. A SYNC is always applied.
        """
        cqrs_id = self.model.CQRS_ID
        stored, incoming = instance.cqrs_revision, mapped_data["cqrs_revision"]
        verdict = rules.save_verdict(stored=stored, incoming=incoming, sync=sync)
        rules.log_verdict(verdict, cqrs_id, instance.pk, stored=stored, incoming=incoming)
        if not verdict.applies:
            return instance
        kwargs = {"meta": meta} if self.model.CQRS_META else {}
        return instance.cqrs_update(sync, mapped_data, previous_data, **kwargs)

    # -- DELETE ------------------------------------------------------------------------------

    def delete_instance(self, master_data: Mapping[str, Any]) -> bool:
        """Delete the row and record a tombstone; True even if there was nothing to delete.

        A DELETE older than the stored row (the key was re-created on the master after it)
        leaves the row alone but still records its tombstone.
        """
        model = self.model
        pk = pk_from_delete(model, master_data)
        delete = Mark(
            parse_revision(master_data.get("cqrs_revision")),
            parse_updated(master_data.get("cqrs_updated")) or timezone.now(),
        )
        using = router.db_for_write(model)
        with transaction.atomic(using=using, savepoint=False):
            lock_key(using, model.CQRS_ID, pk)
            instance = self._locked_row(using, pk)
            if instance is not None:
                if rules.delete_is_stale(row_updated=instance.cqrs_updated, delete=delete):
                    logger.info(
                        "CQRS DELETE older than the stored row (re-created), row kept: pk = %s "
                        "(%s).",
                        pk,
                        model.CQRS_ID,
                    )
                else:
                    instance.delete(using=using)
            _write_tombstone(using, model.CQRS_ID, pk, delete)
        return True


# -- helpers ---------------------------------------------------------------------------------


def lock_key(using: str, cqrs_id: str, pk: Any) -> None:
    """Serialize every apply on one (CQRS_ID, pk) until the transaction ends (PostgreSQL)."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", [cqrs_id, str(pk)]
            )


def _tombstone(using: str, cqrs_id: str, pk: Any) -> Tombstone | None:
    return (
        Tombstone.objects.using(using)
        .select_for_update()
        .filter(cqrs_id=cqrs_id, instance_pk=str(pk))
        .first()
    )


def _mark(tombstone: Tombstone) -> Mark:
    return Mark(tombstone.cqrs_revision, tombstone.cqrs_updated)


def _write_tombstone(using: str, cqrs_id: str, pk: Any, delete: Mark) -> None:
    existing = _tombstone(using, cqrs_id, pk)
    if existing is None:
        try:
            with transaction.atomic(using=using):
                Tombstone.objects.using(using).create(
                    cqrs_id=cqrs_id,
                    instance_pk=str(pk),
                    cqrs_revision=delete.revision,
                    cqrs_updated=delete.updated,
                )
            return
        except IntegrityError:  # written concurrently (databases without key locks)
            existing = _tombstone(using, cqrs_id, pk)
            if existing is None:
                raise
    if existing.cqrs_updated is None or (
        delete.updated is not None and delete.updated >= existing.cqrs_updated
    ):
        existing.cqrs_revision = delete.revision
        existing.cqrs_updated = delete.updated
        existing.save(using=using)
