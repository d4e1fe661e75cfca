"""`manage.py cqrs_bulk_load`: load a `cqrs_bulk_dump` file into the replica model.

Every row goes through the replica's `cqrs_save(data, sync=True)`, so mappings, custom
serialization and the tombstone rule apply as for a received SYNC.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import router, transaction

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import chunks
from dj_cqrs.management._filters import replica_model
from dj_cqrs.management._pipes import input_stream, json_lines, read_header

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


def _flag(text: str) -> bool:
    """`--clear=false` must not clear (it did upstream); accept the usual spellings."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CommandError(f"--clear takes no value, or one of true/false, got {text!r}.")


class Command(DataCommand):
    help = (
        "Load a cqrs_bulk_dump file (or - for stdin) into the replica model, through "
        "cqrs_save(sync=True). --clear deletes the replica rows first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--input", "-i", dest="input", required=True, help="Dump file, or - for stdin."
        )
        parser.add_argument(
            "--clear",
            "-c",
            dest="clear",
            nargs="?",
            const="true",
            default="false",
            help="Delete every replica row of the model before loading (only when given).",
        )
        self.add_batch(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        clear = _flag(str(options["clear"]))
        batch = self.batch_size(options)
        stream = input_stream(self, options, options["input"])
        try:
            self._load(stream, clear, batch)
        finally:
            if options["input"] not in (None, "-"):
                stream.close()

    def _load(self, stream: Any, clear: bool, batch: int) -> None:
        cqrs_id = read_header(stream, "the CQRS_ID")
        model = replica_model(cqrs_id)
        if clear and not hasattr(model, "_default_manager"):
            raise CommandError(f"Replica {cqrs_id!r} is not a Django model; --clear cannot apply.")
        using = router.db_for_write(model) if hasattr(model, "_meta") else "default"
        loaded = failed = 0
        cleared = not clear
        rows_in = chunks(json_lines(stream), batch)
        while True:
            try:
                rows = next(rows_in, None)
            except CommandError as exc:
                raise CommandError(
                    f"{exc} {loaded} row(s) before it were loaded; fix the file and load again."
                ) from None
            for number, data in rows or ():
                if not isinstance(data, dict):
                    raise CommandError(
                        f"Line {number} must be a JSON object (a row of cqrs_bulk_dump), got "
                        f"{type(data).__name__}. {loaded} row(s) before it were loaded; fix the "
                        "file and load again."
                    )
            with transaction.atomic(using=using):
                if not cleared:
                    # Cleared once the first batch was read: a file that is bad from its
                    # first line clears nothing.
                    deleted, _ = model._default_manager.using(using).all().delete()
                    self.stderr.write(f"{cqrs_id}: {deleted} replica row(s) deleted (--clear).")
                    cleared = True
                for number, data in rows or ():
                    try:
                        with transaction.atomic(using=using):
                            ok = model.cqrs_save(data, sync=True)
                    except Exception as exc:  # noqa: BLE001 (report the row, keep loading)
                        ok, reason = False, f"{type(exc).__name__}: {exc}"
                    else:
                        reason = "cqrs_save returned a false value"
                    if ok:
                        loaded += 1
                    else:
                        failed += 1
                        row = f"{cqrs_id} id={data.get('id')!r}"
                        self.stderr.write(f"Line {number} ({row}) not loaded: {reason}")
            if rows is None:
                break
        self.stdout.write(f"{cqrs_id}: {loaded} row(s) loaded.")
        if failed:
            raise CommandError(f"{failed} row(s) of {cqrs_id!r} failed to load (reported above).")
