"""`manage.py cqrs_bulk_load`: load a `cqrs_bulk_dump` file into the replica model.

Every row goes through the replica's `cqrs_save(data, sync=True)`, so mappings, custom
serialization and the tombstone rule apply as for a received SYNC. Reads 3.x's dump files and
prints 3.x's lines on stderr (`Dump file can't be parsed: line N!`, `Instance can't be saved:
line N!`, `Unexpected error: line N! ...`, `Done!` and the count); nothing on stdout. A bad
line is reported and skipped, as in 3.x; unlike 3.x, the exit code is then 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, router, transaction

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import chunks
from dj_cqrs.management._filters import replica_model
from dj_cqrs.management._pipes import input_stream, read_header

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
        name = options["input"]
        if name != "-" and not os.path.exists(name):
            raise CommandError(
                f"File {name} doesn't exist!\nGive the path of a cqrs_bulk_dump file."
            )
        stream = input_stream(self, options, name)
        try:
            self._load(stream, name, clear, batch)
        finally:
            if name != "-":
                stream.close()

    def _load(self, stream: Any, name: str, clear: bool, batch: int) -> None:
        cqrs_id = read_header(stream, "the CQRS_ID", empty=f"File {name} is empty!")
        model = replica_model(cqrs_id)
        if clear and not hasattr(model, "_default_manager"):
            raise CommandError(f"Replica {cqrs_id!r} is not a Django model; --clear cannot apply.")
        using = router.db_for_write(model) if hasattr(model, "_meta") else "default"
        loaded = failed = 0
        cleared = not clear
        for rows in chunks(_rows(stream), batch):
            with transaction.atomic(using=using):
                if not cleared:
                    cleared = True
                    self._clear(model, cqrs_id, using)
                for number, data in rows:
                    if not isinstance(data, dict):
                        failed += 1
                        self.stderr.write(f"Dump file can't be parsed: line {number}!")
                        continue
                    try:
                        with transaction.atomic(using=using):
                            ok = model.cqrs_save(data, sync=True)
                    except Exception as exc:  # noqa: BLE001 (report the row, keep loading)
                        failed += 1
                        self.stderr.write(f"Unexpected error: line {number}! {exc}")
                        continue
                    if ok:
                        loaded += 1
                    else:
                        failed += 1
                        self.stderr.write(f"Instance can't be saved: line {number}!")
        if not cleared:  # an empty dump still clears, as asked
            with transaction.atomic(using=using):
                self._clear(model, cqrs_id, using)
        self.stderr.write(f"Done!\n{loaded} instance(s) loaded.")
        if failed:
            raise CommandError(
                f"{failed} row(s) of {cqrs_id!r} failed to load (reported above with their line "
                "numbers); fix them and load the file again."
            )

    def _clear(self, model: Any, cqrs_id: str, using: str) -> None:
        try:
            deleted, _ = model._default_manager.using(using).all().delete()
        except DatabaseError as exc:
            raise CommandError(f"Delete operation fails!\n{type(exc).__name__}: {exc}") from None
        self.stderr.write(f"{cqrs_id}: {deleted} replica row(s) deleted (--clear).")


def _rows(stream: Any) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of every non-blank line; `_UNREADABLE` for bad JSON."""
    for number, line in enumerate(stream, start=2):
        text = line.strip()
        if not text:
            continue
        try:
            yield number, json.loads(text)
        except ValueError:
            yield number, _UNREADABLE


_UNREADABLE = object()
