"""`manage.py cqrs_sync`: re-send master rows to replicas as SYNC events (the repair path).

stdout carries 3.x's lines (`No objects found for filter!`, `Processing N records with batch
size B`, `Sync record failed for pk=...`, the `Done!` block); our summary and the progress bar
go to stderr.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import instance_batches
from dj_cqrs.management._filters import filtered, master_model, parse_filter
from dj_cqrs.management._sync import Syncer, check_produces, done_block


class Command(DataCommand):
    help = (
        "Send SYNC events for master rows (all of them, or those matching --filter), to every "
        "replica or to one replica queue (-q). Rows are read in primary-key order, in batches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_cqrs_id(parser, "CQRS_ID of the master model to sync.")
        self.add_filter(parser)
        parser.add_argument(
            "--queue",
            "-q",
            dest="queue",
            default=None,
            help="Send only to the replica service consuming this queue (default: every replica).",
        )
        self.add_batch(parser)
        self.add_progress(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        model = master_model(options["cqrs_id"])
        check_produces(model)
        batch = self.batch_size(options)
        lookups = parse_filter(options["filter"])
        queryset = filtered(model.relate_cqrs_serialization(model._default_manager.all()), lookups)
        self.check_transport()
        total = queryset.count()
        if not total:
            self.stdout.write("No objects found for filter!")
            return
        if options["progress"]:
            self.stdout.write(f"Processing {total} records with batch size {batch}")
        progress = self.progress(options, total, f"{model.CQRS_ID}: synced")
        syncer = Syncer(model, options["queue"], progress, self.stdout)
        for instances in instance_batches(queryset, batch):
            syncer.send(instances)
        progress.finish()
        self.stdout.write(done_block(syncer.counts.sent, syncer.counts.processed))
        self.stderr.write(syncer.summary())
        syncer.raise_if_failed()
