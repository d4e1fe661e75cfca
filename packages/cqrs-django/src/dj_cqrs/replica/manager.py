"""`ReplicaManager`: applies SAVE, SYNC and DELETE to replica rows, safely under concurrency.

Every apply runs in one transaction that first takes a lock on the (CQRS_ID, pk) key, then
reads the row (and its tombstone) and writes. On PostgreSQL the key lock is a transaction
advisory lock, so two workers can never interleave on one key, even while the row does not
exist yet; the row is also read with `SELECT ... FOR UPDATE`. On SQLite a write transaction
locks the whole database; a concurrent writer fails with "database is locked" and its message
is retried, never half-applied. Other databases rely on `SELECT ... FOR UPDATE` plus the unique
primary key (a lost insert race turns into an update).

What happens to each message is decided by `dj_cqrs.replica.decide`, as on the bulk path;
this module only reads and writes the rows (through the model's hooks).

As in django-cqrs, the public methods log bad data and database errors and return None (False
for deletes); inside `errors.raising_errors()` (the consumer) they raise them instead.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, models, router, transaction

from dj_cqrs.replica import decide, errors
from dj_cqrs.replica.decide import Action
from dj_cqrs.replica.mapping import map_previous_data
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
            The model instance (also when the event was a duplicate or out of order), a
            truthy `Skipped` when a tombstone shows the event is about a deleted row, or None
            (logged) when the data does not fit the model or the database failed.

        Raises:
            BadData, django.db.Error: only inside `errors.raising_errors()` (the consumer).
        """
        outer_raising = errors.raising()
        try:
            # Raising inside: a lost insert race must reach `_create_or_update` as an error.
            with errors.raising_errors():
                return self._save(master_data, previous_data, sync, meta, not outer_raising)
        except errors.APPLY_ERRORS as exc:
            if outer_raising:
                raise
            pk = master_data.get("id") if isinstance(master_data, Mapping) else None
            errors.log_apply_error("SYNC" if sync else "save", self.model, exc, pk)
            return None

    def _save(
        self,
        master_data: Mapping[str, Any],
        previous_data: Mapping[str, Any] | None,
        sync: bool,
        meta: Any,
        savepoint: bool,
    ) -> Any:
        model = self.model
        pk, mapped, incoming = decide.read_save(model, master_data)
        previous = map_previous_data(model, previous_data) if previous_data else None
        using = router.db_for_write(model)
        # In the consumer's per-message savepoint a second one is waste; a direct call gets
        # one, so that a failure returning None leaves the caller's transaction usable.
        with transaction.atomic(using=using, savepoint=savepoint):
            lock_key(using, model.CQRS_ID, pk)
            instance = self._locked_row(using, pk)
            if instance is not None:
                return self.update_instance(instance, mapped, previous, sync=sync, meta=meta)
            decision = decide.decide_save(
                row=None,
                incoming=incoming,
                sync=sync,
                tombstone=lambda: decide.tombstone_mark(_tombstone(using, model.CQRS_ID, pk)),
            )
            decide.report(decision, model.CQRS_ID, pk, using)
            if decision.action is not Action.CREATE:
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
            return self.create_instance(mapped, previous_data=previous, sync=sync, meta=meta)
        try:
            with transaction.atomic(using=using):
                return self.create_instance(mapped, previous_data=previous, sync=sync, meta=meta)
        except IntegrityError:
            # Another worker created the row between our read and our insert: update it instead.
            instance = self._locked_row(using, mapped[self.model._meta.pk.name])
            if instance is None:
                raise
            return self.update_instance(instance, mapped, previous, sync=sync, meta=meta)

    def create_instance(
        self,
        mapped_data: dict[str, Any],
        previous_data: Mapping[str, Any] | None = None,
        sync: bool = False,
        meta: Any = None,
    ) -> Any:
        """Create the row from mapped data through the model's `cqrs_create`.

        Returns:
            The new instance, or None (logged) when it cannot be created, as in django-cqrs:
            the row exists already (whatever its revision; `save_instance` applies the
            revision rules), the database refused it, or `cqrs_create` raised a
            ValidationError.
        """
        kwargs = self._hook_kwargs(previous_data, meta)
        if errors.raising():
            return self.model.cqrs_create(sync, mapped_data, **kwargs)
        try:
            with transaction.atomic(using=router.db_for_write(self.model)):
                return self.model.cqrs_create(sync, mapped_data, **kwargs)
        except errors.APPLY_ERRORS as exc:
            pk = mapped_data.get(self.model._meta.pk.name)
            errors.log_apply_error("create", self.model, exc, pk)
            return None

    def update_instance(
        self,
        instance: Any,
        mapped_data: dict[str, Any],
        previous_data: Mapping[str, Any] | None = None,
        sync: bool = False,
        meta: Any = None,
    ) -> Any:
        """Apply the rules (`replica.decide`), then update through the instance's `cqrs_update`.

        A SAVE with the stored revision is a duplicate and one with a lower revision is out of
        order, as is a late SAVE of a deleted and re-created row: all are skipped (the
        instance is returned unchanged). A revision more than one ahead is applied with a
        warning about lost events. A SYNC is always applied. Returns None (logged) if
        `cqrs_update` fails with a database or validation error.
        """
        model = self.model
        using = router.db_for_write(model)
        pk = instance.pk
        decision = decide.decide_save(
            row=decide.row_mark(instance),
            incoming=Mark(mapped_data["cqrs_revision"], _updated(mapped_data)),
            sync=sync,
            tombstone=lambda: decide.tombstone_mark(_tombstone(using, model.CQRS_ID, pk)),
        )
        decide.report(decision, model.CQRS_ID, pk, using)
        if decision.action is not Action.UPDATE:
            return instance
        kwargs = self._hook_kwargs(previous_data, meta)
        if errors.raising():
            return instance.cqrs_update(sync, mapped_data, **kwargs)
        try:
            with transaction.atomic(using=router.db_for_write(self.model)):
                return instance.cqrs_update(sync, mapped_data, **kwargs)
        except errors.APPLY_ERRORS as exc:
            errors.log_apply_error("update", self.model, exc, instance.pk)
            return None

    def _hook_kwargs(self, previous_data: Any, meta: Any) -> dict[str, Any]:
        """Keywords of `cqrs_create`/`cqrs_update` as django-cqrs passes them (after `sync`,
        `mapped_data`): `previous_data` always, `meta` only for CQRS_META models."""
        kwargs: dict[str, Any] = {"previous_data": previous_data}
        if self.model.CQRS_META:
            kwargs["meta"] = meta
        return kwargs

    # -- DELETE ------------------------------------------------------------------------------

    def delete_instance(self, master_data: Mapping[str, Any]) -> bool:
        """Delete the row and record a tombstone; True even if there was nothing to delete.

        A DELETE older than the stored row (the key was re-created on the master after it)
        leaves the row alone but still records its tombstone. Returns False (logged) when the
        data lacks the primary key or the database failed; inside `errors.raising_errors()`
        (the consumer) those raise instead.
        """
        outer_raising = errors.raising()
        try:
            with errors.raising_errors():
                self._delete(master_data, not outer_raising)
        except errors.APPLY_ERRORS as exc:
            if outer_raising:
                raise
            pk = master_data.get("id") if isinstance(master_data, Mapping) else None
            errors.log_apply_error("delete", self.model, exc, pk)
            return False
        return True

    def _delete(self, master_data: Mapping[str, Any], savepoint: bool) -> None:
        model = self.model
        pk, delete = decide.read_delete(model, master_data)
        using = router.db_for_write(model)
        with transaction.atomic(using=using, savepoint=savepoint):
            lock_key(using, model.CQRS_ID, pk)
            instance = self._locked_row(using, pk)
            tombstone = _tombstone(using, model.CQRS_ID, pk)
            decision = decide.decide_delete(
                row=None if instance is None else decide.row_mark(instance),
                delete=delete,
                tombstone=decide.tombstone_mark(tombstone),
            )
            decide.report(decision, model.CQRS_ID, pk, using)
            if decision.action is Action.DELETE:
                instance.delete(using=using)
            if decision.write_tombstone:
                _write_tombstone(using, model.CQRS_ID, pk, delete, tombstone)


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
    tombstones = Tombstone.objects.using(using)
    if transaction.get_connection(using).in_atomic_block:  # not in a direct update_instance()
        tombstones = tombstones.select_for_update()
    return tombstones.filter(cqrs_id=cqrs_id, instance_pk=str(pk)).first()


def _updated(mapped_data: Mapping[str, Any]) -> datetime.datetime | None:
    """The parsed `cqrs_updated` of mapped data (a direct `update_instance` call may pass
    anything: then the tombstone rule is not applied, as in django-cqrs)."""
    value = mapped_data.get("cqrs_updated")
    return value if isinstance(value, datetime.datetime) else None


def _write_tombstone(
    using: str, cqrs_id: str, pk: Any, delete: Mark, existing: Tombstone | None
) -> None:
    """Record `delete` as the key's tombstone (`decide.decide_delete` said it supersedes)."""
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
            if not decide.tombstone_supersedes(decide.tombstone_mark(existing), delete):
                return
    existing.cqrs_revision = delete.revision
    existing.cqrs_updated = delete.updated
    existing.save(using=using)
