"""`manage.py cqrs_diff_sync`: last stage of the diff pipeline, run on the master service.

Reads `cqrs_diff_replica` output on stdin and sends a SYNC for every listed primary key, to
the queue named last on line 1 (`CQRS_ID,timestamp,queue`; `None`: every replica). As in 3.x,
each input line is one `cqrs_sync` run and prints its lines on stdout (`No objects found for
filter!` when none of its rows exist on the master, else the `Done!` block); our summary of the
whole input goes to stderr.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.management.base import CommandParser

from dj_cqrs.management._base import DEFAULT_BATCH, DataCommand
from dj_cqrs.management._batching import chunks, instances_by_pk
from dj_cqrs.management._filters import master_model
from dj_cqrs.management._pipes import DiffHeader, input_stream, pk_lists, read_header, to_pk
from dj_cqrs.management._sync import Syncer, check_produces, done_block


class Command(DataCommand):
    help = (
        "Read cqrs_diff_replica output on stdin and send SYNC events for the listed rows "
        "(to the queue at the end of line 1, if any)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_batch(parser, default=DEFAULT_BATCH)
        self.add_progress(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        batch = self.batch_size(options)
        stream = input_stream(self, options)
        header = DiffHeader(read_header(stream, "'CQRS_ID,timestamp' from cqrs_diff_replica"))
        model = master_model(header.cqrs_id)
        check_produces(model)
        self.check_transport()
        queryset = model.relate_cqrs_serialization(model._default_manager.all())
        progress = self.progress(options, None, f"{model.CQRS_ID}: synced")
        syncer = Syncer(model, header.queue, progress, self.stdout)
        listed = found = 0
        for number, values in pk_lists(stream):
            pks = list(dict.fromkeys(to_pk(model, value, number) for value in values))
            instances = instances_by_pk(queryset, pks)
            listed += len(pks)
            found += len(instances)
            if not instances:
                self.stdout.write("No objects found for filter!")
                continue
            if options["progress"]:
                self.stdout.write(f"Processing {len(instances)} records with batch size {batch}")
            before = dataclasses.replace(syncer.counts)
            for chunk in chunks(instances, batch):
                syncer.send(chunk)
            self.stdout.write(
                done_block(
                    syncer.counts.sent - before.sent,
                    syncer.counts.processed - before.processed,
                )
            )
        progress.finish()
        summary = syncer.summary()
        if listed > found:
            summary += f" {listed - found} listed row(s) no longer exist on the master."
        self.stderr.write(summary)
        syncer.raise_if_failed()
