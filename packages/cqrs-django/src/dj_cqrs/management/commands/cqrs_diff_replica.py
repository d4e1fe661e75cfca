"""`manage.py cqrs_diff_replica`: second stage of the diff pipeline, run on a replica service.

Reads `cqrs_diff_master` output on stdin; prints line 1 with `,queue` appended (this service's
`CQRS['queue']`, `None` when unset: `cqrs_diff_sync` sends the SYNCs to that queue only), then
for each input line the JSON list of primary keys to resync: rows missing on this replica or
whose `cqrs_revision` differs from the master's. As in 3.x, each such list is also shown on
stderr (`PK to resync: {...}`) and its order is that of a Python set.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import values_by_pk
from dj_cqrs.management._filters import replica_model
from dj_cqrs.management._pipes import (
    DiffHeader,
    dumps,
    input_stream,
    pk_revision_lists,
    read_header,
    to_pk,
)


class Command(DataCommand):
    help = (
        "Read cqrs_diff_master output on stdin and print the primary keys whose replica row "
        "is missing or has another revision, for cqrs_diff_sync."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        pass

    def handle(self, *args: Any, **options: Any) -> None:
        stream = input_stream(self, options)
        header = DiffHeader(read_header(stream, "'CQRS_ID,timestamp' from cqrs_diff_master"))
        model = replica_model(header.cqrs_id, needs_table=True)
        rows = model._default_manager.all()
        out = self.stdout
        queue = getattr(settings, "CQRS", {}).get("queue")
        out.write(f"{header.line},{queue}")
        compared = differing = 0
        for number, pairs in pk_revision_lists(stream):
            wanted = {to_pk(model, pk, number): (pk, revision) for pk, revision in pairs}
            stored = values_by_pk(rows, wanted, "cqrs_revision")
            # A set, as 3.x builds it: the same keys come out in the same order.
            resync = {
                pk
                for key, (pk, revision) in wanted.items()
                if key not in stored or stored[key] != revision
            }
            compared += len(wanted)
            differing += len(resync)
            if resync:
                out.write(dumps(list(resync)))
                out.flush()
                self.stderr.write(f"PK to resync: {resync}")
        self.stderr.write(
            f"{header.cqrs_id}: {differing} of {compared} row(s) differ on this replica."
        )
