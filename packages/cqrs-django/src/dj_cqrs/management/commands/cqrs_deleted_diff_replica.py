"""`manage.py cqrs_deleted_diff_replica`: first stage of the deleted-rows pipeline (replica).

    manage.py cqrs_deleted_diff_replica --cqrs-id ID | manage.py cqrs_deleted_diff_master \
        | manage.py cqrs_deleted_sync_replica

Prints line 1 `CQRS_ID,timestamp` (as 3.x), then one JSON list of replica primary keys per
batch. When no row matches it prints `No objects found for filter!` on stderr and nothing on
stdout, as 3.x does.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import value_batches
from dj_cqrs.management._filters import filtered, parse_filter, replica_model
from dj_cqrs.management._pipes import dumps
from dj_cqrs.master.serialization import wire_pk


class Command(DataCommand):
    help = (
        "Print the primary keys of replica rows (line 1: CQRS_ID,timestamp; then JSON lists) for "
        "cqrs_deleted_diff_master."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_cqrs_id(parser, "CQRS_ID of the replica model to check.")
        self.add_filter(parser)
        self.add_batch(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        model = replica_model(options["cqrs_id"], needs_table=True)
        batch = self.batch_size(options)
        queryset = filtered(model._default_manager.all(), parse_filter(options["filter"]))
        if not queryset.exists():
            self.stderr.write("No objects found for filter!")
            return
        out = self.stdout
        out.write(f"{model.CQRS_ID},{timezone.now()}")
        for rows in value_batches(queryset, [], batch):
            out.write(dumps([wire_pk(row[0]) for row in rows]))
            out.flush()
