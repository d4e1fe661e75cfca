"""`manage.py cqrs_deleted_sync_replica`: last stage of the deleted-rows pipeline (replica).

Reads `cqrs_deleted_diff_master` output on stdin and deletes the listed replica rows through
the model's `cqrs_delete`, as if their DELETE events had arrived: a tombstone is kept, so a
late SAVE of a deleted row cannot bring it back. Like 3.x it prints nothing on stdout; the
count and failed rows go to stderr.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import router, transaction
from django.utils import timezone

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import values_by_pk
from dj_cqrs.management._filters import replica_model
from dj_cqrs.management._pipes import header_cqrs_id, input_stream, pk_lists, read_header, to_pk
from dj_cqrs.master.serialization import wire_pk


class Command(DataCommand):
    help = (
        "Read cqrs_deleted_diff_master output on stdin and delete those replica rows "
        "(keeping tombstones)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        pass

    def handle(self, *args: Any, **options: Any) -> None:
        stream = input_stream(self, options)
        cqrs_id = header_cqrs_id(
            read_header(stream, "'CQRS_ID,timestamp' from cqrs_deleted_diff_master")
        )
        model = replica_model(cqrs_id, needs_table=True)
        using = router.db_for_write(model)
        rows = model._default_manager.using(using).all()
        pk_name = model._meta.pk.name
        deleted = failed = 0
        for number, values in pk_lists(stream):
            keys = [to_pk(model, value, number) for value in values]
            revisions = values_by_pk(rows, keys, "cqrs_revision")
            now = str(timezone.now())
            with transaction.atomic(using=using):
                for key in keys:
                    if key not in revisions:
                        continue  # already gone
                    data = {
                        "id": wire_pk(key),
                        pk_name: wire_pk(key),
                        "cqrs_revision": (revisions[key] or 0) + 1,
                        "cqrs_updated": now,
                    }
                    try:
                        with transaction.atomic(using=using):
                            ok = model.cqrs_delete(data)
                    except Exception as exc:  # noqa: BLE001 (report the row, keep going)
                        ok, reason = False, f"{type(exc).__name__}: {exc}"
                    else:
                        reason = "cqrs_delete returned a false value"
                    if ok:
                        deleted += 1
                    else:
                        failed += 1
                        self.stderr.write(f"{cqrs_id} pk={key!r} not deleted: {reason}")
        self.stderr.write(f"{cqrs_id}: {deleted} replica row(s) deleted.")
        if failed:
            raise CommandError(
                f"{failed} row(s) of {cqrs_id!r} could not be deleted (reported above)."
            )
