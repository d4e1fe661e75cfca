"""`manage.py cqrs_diff_master`: first stage of the diff pipeline, run on the master service.

    manage.py cqrs_diff_master --cqrs-id ID | manage.py cqrs_diff_replica | manage.py cqrs_diff_sync

Prints line 1 `CQRS_ID,timestamp[,queue]`, then one JSON list of `[pk, cqrs_revision]` pairs
per batch of master rows, in primary-key order.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import value_batches
from dj_cqrs.management._filters import filtered, master_model, parse_filter
from dj_cqrs.management._pipes import dumps
from dj_cqrs.master.serialization import wire_pk


class Command(DataCommand):
    help = (
        "Print the primary keys and revisions of master rows for cqrs_diff_replica "
        "(line 1: CQRS_ID,timestamp[,queue]; then JSON lists of [pk, revision] pairs)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_cqrs_id(parser, "CQRS_ID of the master model to compare.")
        self.add_filter(parser)
        self.add_batch(parser)
        parser.add_argument(
            "--queue",
            "-q",
            dest="queue",
            default=None,
            help="Replica queue that cqrs_diff_sync sends the SYNCs to (default: every replica).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        model = master_model(options["cqrs_id"])
        batch = self.batch_size(options)
        queryset = filtered(model._default_manager.all(), parse_filter(options["filter"]))
        header = f"{model.CQRS_ID},{timezone.now().isoformat()}"
        if options["queue"]:
            header += f",{options['queue']}"
        out = self.stdout
        out.write(header)
        for rows in value_batches(queryset, ["cqrs_revision"], batch):
            out.write(dumps([[wire_pk(pk), revision] for pk, revision in rows]))
            out.flush()
