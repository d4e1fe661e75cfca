"""`manage.py cqrs_deleted_diff_master`: second stage of the deleted-rows pipeline (master).

Reads `cqrs_deleted_diff_replica` output on stdin; prints line 1 unchanged, then for each
input line the JSON list of primary keys that no longer exist on the master. As in 3.x, each
such list is also shown on stderr (`PK to delete: [...]`) and its order is that of a Python set.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import existing_pks
from dj_cqrs.management._filters import master_model
from dj_cqrs.management._pipes import (
    dumps,
    header_cqrs_id,
    input_stream,
    pk_lists,
    read_header,
    to_pk,
)


class Command(DataCommand):
    help = (
        "Read cqrs_deleted_diff_replica output on stdin and print the primary keys that no "
        "longer exist on the master, for cqrs_deleted_sync_replica."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        pass

    def handle(self, *args: Any, **options: Any) -> None:
        stream = input_stream(self, options)
        header = read_header(stream, "'CQRS_ID,timestamp' from cqrs_deleted_diff_replica")
        cqrs_id = header_cqrs_id(header)
        model = master_model(cqrs_id)
        rows = model._base_manager.all()  # every row counts as existing, whatever the manager
        out = self.stdout
        out.write(header)
        checked = gone_total = 0
        for number, values in pk_lists(stream):
            keyed = {to_pk(model, value, number): value for value in values}
            present = existing_pks(rows, keyed)
            # A list made from a set, as 3.x: the same keys come out in the same order.
            gone = list({value for key, value in keyed.items() if key not in present})
            checked += len(keyed)
            gone_total += len(gone)
            if gone:
                out.write(dumps(gone))
                out.flush()
                self.stderr.write(f"PK to delete: {gone}")
        self.stderr.write(
            f"{cqrs_id}: {gone_total} of {checked} row(s) no longer exist on the master."
        )
