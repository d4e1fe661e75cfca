"""`manage.py cqrs_diff_sync`: last stage of the diff pipeline, run on the master service.

Reads `cqrs_diff_replica` output on stdin and sends a SYNC for every listed primary key, to
the queue named on line 1 (`CQRS_ID,timestamp,queue`) or to every replica.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import chunks, instances_by_pk
from dj_cqrs.management._filters import master_model
from dj_cqrs.management._pipes import DiffHeader, input_stream, pk_lists, read_header, to_pk
from dj_cqrs.management._sync import Syncer, check_produces


class Command(DataCommand):
    help = (
        "Read cqrs_diff_replica output on stdin and send SYNC events for the listed rows "
        "(to the queue on line 1, if any)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_batch(parser, default=1000)
        self.add_progress(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        batch = self.batch_size(options)
        stream = input_stream(self, options)
        header = DiffHeader(read_header(stream, "'CQRS_ID,timestamp' from cqrs_diff_replica"))
        model = master_model(header.cqrs_id)
        check_produces(model)
        pks: dict[Any, None] = {}  # ordered and without repeats
        for number, values in pk_lists(stream):
            for value in values:
                pks.setdefault(to_pk(model, value, number), None)
        self.check_transport()
        queryset = model.relate_cqrs_serialization(model._default_manager.all())
        progress = self.progress(options, len(pks), f"{model.CQRS_ID}: synced")
        syncer = Syncer(model, header.queue, progress)
        found = 0
        for chunk in chunks(pks, batch):
            instances = instances_by_pk(queryset, chunk)
            found += len(instances)
            syncer.send(instances)
            progress.advance(len(chunk) - len(instances))
        progress.finish()
        gone = len(pks) - found
        summary = syncer.summary()
        if gone:
            summary += f" {gone} listed row(s) no longer exist on the master."
        self.stdout.write(summary)
        syncer.raise_if_failed()
