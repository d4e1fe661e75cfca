"""`manage.py cqrs_diff_master`: first stage of the diff pipeline, run on the master service.

    manage.py cqrs_diff_master --cqrs-id ID | manage.py cqrs_diff_replica | manage.py cqrs_diff_sync

Prints line 1 `CQRS_ID,timestamp`, then one JSON list of `[pk, cqrs_revision]` pairs per batch
of master rows, in primary-key order, leaving out rows whose `is_sync_instance()` is False (as
3.x). When no row matches it prints `No objects found for filter!` on stderr and nothing on
stdout, as 3.x does.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import instance_batches, value_batches
from dj_cqrs.management._filters import filtered, master_model, parse_filter
from dj_cqrs.management._pipes import dumps
from dj_cqrs.master.mixins import RawMasterMixin
from dj_cqrs.master.serialization import wire_pk


class Command(DataCommand):
    help = (
        "Print the primary keys and revisions of master rows for cqrs_diff_replica "
        "(line 1: CQRS_ID,timestamp; then JSON lists of [pk, revision] pairs)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_cqrs_id(parser, "CQRS_ID of the master model to compare.")
        self.add_filter(parser)
        self.add_batch(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        model = master_model(options["cqrs_id"])
        batch = self.batch_size(options)
        queryset = filtered(model._default_manager.all(), parse_filter(options["filter"]))
        if not queryset.exists():
            self.stderr.write("No objects found for filter!")
            return
        out = self.stdout
        out.write(f"{model.CQRS_ID},{timezone.now()}")
        for pairs in _pairs(model, queryset, batch):
            out.write(dumps(pairs))
            out.flush()


def _pairs(model: Any, queryset: Any, batch: int) -> Any:
    """`[pk, revision]` lists per batch; instances are loaded only for a custom is_sync_instance."""
    if model.is_sync_instance is RawMasterMixin.is_sync_instance:
        for rows in value_batches(queryset, ["cqrs_revision"], batch):
            yield [[wire_pk(pk), revision] for pk, revision in rows]
        return
    for instances in instance_batches(queryset, batch):
        yield [[wire_pk(i.pk), i.cqrs_revision] for i in instances if i.is_sync_instance()]
