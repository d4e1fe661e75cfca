"""The benchmark's models: a master, its replica (one CQRS_ID), and plain tables for ceilings."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

from dj_cqrs.mixins import MasterMixin, ReplicaMixin


class ClockNow(Now):
    """The database clock when the row is written (PostgreSQL's now() is the transaction start)."""

    def as_postgresql(self, compiler, connection, **extra_context):  # type: ignore[no-untyped-def]
        return "clock_timestamp()", []


class BenchRow(MasterMixin):
    CQRS_ID = "bench_row"

    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    saved_at = models.FloatField(default=0.0, help_text="time.time() just before the save")


class PlainRow(models.Model):  # noqa: DJ008
    """The same columns without CQRS: the master-side baseline."""

    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    saved_at = models.FloatField(default=0.0)


class BenchRowRef(ReplicaMixin):
    CQRS_ID = "bench_row"

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    saved_at = models.FloatField(default=0.0)
    replicated_at = models.DateTimeField(null=True, db_default=ClockNow())


class UpsertRow(models.Model):  # noqa: DJ008
    """Target of the raw bulk-upsert ceiling (the replica's columns, no CQRS)."""

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    saved_at = models.FloatField(default=0.0)
    cqrs_revision = models.IntegerField(default=0)
    cqrs_updated = models.DateTimeField()
