"""Tombstones: what a replica remembers about a row after applying its DELETE.

Without them a late SAVE, SYNC or retry for a deleted row would create it again (defect 4 of the
reference). The rule that uses them lives in `dj_cqrs.replica.rules`.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import models


class TombstoneQuerySet(models.QuerySet["Tombstone"]):
    def purge(self, *, before: datetime.datetime) -> int:
        """Delete tombstones written before `before`; return how many.

        Safe once no message older than `before` can still arrive: keep at least the message
        TTL plus the longest retry period (`dj_cqrs.replica.retention`, which `cqrs_consume`
        and `cqrs_tombstones purge` use to delete in short batches).
        """
        deleted, _ = self.filter(deleted_at__lt=before).delete()
        return deleted


class Tombstone(models.Model):
    """The last DELETE applied to one replica row (one per CQRS_ID and primary key)."""

    id = models.BigAutoField(primary_key=True)
    cqrs_id = models.CharField(max_length=255)
    instance_pk = models.CharField(max_length=255, help_text="Primary key, as a string.")
    cqrs_revision = models.IntegerField(
        null=True, help_text="Revision carried by the DELETE (the last SAVE's revision + 1)."
    )
    cqrs_updated = models.DateTimeField(
        null=True, help_text="Master time of the DELETE (replica time if the master sent none)."
    )
    deleted_at = models.DateTimeField(auto_now=True, help_text="When the replica wrote it.")

    objects: Any = TombstoneQuerySet.as_manager()

    class Meta:
        app_label = "dj_cqrs"
        constraints = (
            models.UniqueConstraint(
                fields=["cqrs_id", "instance_pk"], name="dj_cqrs_tombstone_key"
            ),
        )
        indexes = (models.Index(fields=["deleted_at"], name="dj_cqrs_tombstone_deleted"),)

    def __str__(self) -> str:
        return f"{self.cqrs_id}:{self.instance_pk} deleted at revision {self.cqrs_revision}"
