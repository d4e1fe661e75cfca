"""`Model.cqrs`: bulk operations that publish one event per row."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models, router, transaction
from django.db.models import F
from django.utils import timezone

from dj_cqrs.master.serialization import all_tracked

_CHUNK = 500


class MasterManager(models.Manager[Any]):
    """Manager of master models (`Model.cqrs`)."""

    def bulk_create(self, objs: Iterable[Any], **kwargs: Any) -> list[Any]:  # type: ignore[override]
        """`bulk_create` that publishes a SAVE per created row on commit.

        The primary keys must come back from the database (PostgreSQL, SQLite, MariaDB with
        RETURNING) or be set by the caller; rows without a pk are not published.
        """
        using = self._db or router.db_for_write(self.model)
        objs = list(objs)
        for obj in objs:
            obj.save_tracked_fields()  # previous_data of a new row, as a save records it
        with transaction.atomic(using=using, savepoint=False):
            created = super().bulk_create(objs, **kwargs)
            self.model.call_post_bulk_create(created, using=using)
        return created

    def bulk_update(self, queryset: models.QuerySet[Any], **kwargs: Any) -> int:  # type: ignore[override]
        """`queryset.update(**kwargs)` that bumps `cqrs_revision`, sets `cqrs_updated` and
        publishes a SAVE per row (with the previous values of every tracked field) on commit.

        Returns:
            The number of rows updated.
        """
        model = queryset.model
        # `_db`: set by `using()` only (private; django-stubs does not declare it).
        using = queryset.db if queryset._db else router.db_for_write(model)  # type: ignore[attr-defined]
        base = model._base_manager.using(using)
        with transaction.atomic(using=using, savepoint=False):
            locked = queryset.using(using).order_by("pk")
            if transaction.get_connection(using).features.has_select_for_update:
                locked = locked.select_for_update()
            before = {obj.pk: all_tracked(obj) for obj in locked}
            pks = list(before)
            now = timezone.now()
            count = 0
            for start in range(0, len(pks), _CHUNK):
                chunk = pks[start : start + _CHUNK]
                count += base.filter(pk__in=chunk).update(
                    cqrs_revision=F("cqrs_revision") + 1, cqrs_updated=now, **kwargs
                )
            instances: list[Any] = []
            for start in range(0, len(pks), _CHUNK):
                chunk = pks[start : start + _CHUNK]
                rows = model.relate_cqrs_serialization(base.filter(pk__in=chunk)).order_by("pk")
                instances.extend(rows)
            for instance in instances:
                instance.__dict__["_cqrs_bulk_previous"] = before.get(instance.pk)
            model.call_post_update(instances, using=using)
        return count
