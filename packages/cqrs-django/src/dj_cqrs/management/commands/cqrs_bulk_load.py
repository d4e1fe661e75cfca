"""`manage.py cqrs_bulk_load`: load a `cqrs_bulk_dump` file into the replica model.

Every row is applied as a received SYNC (3.x calls `cqrs_save(data, sync=True)`), so
mappings, custom serialization and the tombstone rule apply. A model whose apply is the stock
one goes through the consumer's bulk path (`dj_cqrs.replica.batch`: a few statements per
`--batch` rows, the same final state), which loads as fast as the consumer applies; a batch
with a failing row, and every other model, goes row by row through `cqrs_save`, so failures are
reported exactly as before. Reads 3.x's dump files and prints 3.x's lines on stderr (`Dump file
can't be parsed: line N!`, `Instance can't be saved: line N!`, `Unexpected error: line N!
...`, `Done!` and the count); nothing on stdout. A bad line is reported and skipped, as in 3.x;
unlike 3.x, the exit code is then 1. `--progress` adds a progress line on stderr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, router, transaction

from cqrs_core.constants import SignalType
from cqrs_core.payload import TransportPayload
from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import chunks
from dj_cqrs.management._filters import replica_model
from dj_cqrs.management._pipes import input_stream, read_header
from dj_cqrs.management._progress import Progress

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
        self.add_progress(parser)

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
            self._load(stream, name, clear, batch, options)
        finally:
            if name != "-":
                stream.close()

    def _load(
        self, stream: Any, name: str, clear: bool, batch: int, options: dict[str, Any]
    ) -> None:
        cqrs_id = read_header(stream, "the CQRS_ID", empty=f"File {name} is empty!")
        model = replica_model(cqrs_id)
        if clear and not hasattr(model, "_default_manager"):
            raise CommandError(f"Replica {cqrs_id!r} is not a Django model; --clear cannot apply.")
        using = router.db_for_write(model) if hasattr(model, "_meta") else "default"
        total = _count_lines(name) if options.get("progress") and name != "-" else None
        progress = self.progress(options, total, f"{cqrs_id}: loaded")
        bulk = _bulk_apply(model)
        loaded = failed = 0
        cleared = not clear
        for rows in chunks(_rows(stream), batch):
            with transaction.atomic(using=using):
                if not cleared:
                    cleared = True
                    self._clear(model, cqrs_id, using)
                done = None if bulk is None else self._load_bulk(bulk, model, rows, using, progress)
                if done is None:
                    done = self._load_rows(model, rows, using, progress)
            ok, bad = done
            loaded += ok
            failed += bad
            progress.advance(ok + bad, failed=bad)
        if not cleared:  # an empty dump still clears, as asked
            with transaction.atomic(using=using):
                self._clear(model, cqrs_id, using)
        progress.finish()
        self.stderr.write(f"Done!\n{loaded} instance(s) loaded.")
        if failed:
            raise CommandError(
                f"{failed} row(s) of {cqrs_id!r} failed to load (reported above with their line "
                "numbers); fix them and load the file again."
            )

    def _load_bulk(
        self, apply: Any, model: Any, rows: list[tuple[int, Any]], using: str, progress: Progress
    ) -> tuple[int, int] | None:
        """The rows as SYNC payloads through the bulk path, in a savepoint; None if any row
        fails (the savepoint is rolled back and the caller loads the rows one by one)."""
        payloads = [_sync_payload(model, data) for _, data in rows if isinstance(data, dict)]
        try:
            with transaction.atomic(using=using):
                errors = apply(model, payloads) if payloads else []
                if any(error is not None for error in errors):
                    raise _RowFailed()
        except Exception:  # noqa: BLE001 (_RowFailed, or a bulk statement failed: go row by row)
            return None
        unreadable = 0
        for number, data in rows:
            if not isinstance(data, dict):
                unreadable += 1
                self._report(progress, f"Dump file can't be parsed: line {number}!")
        return len(payloads), unreadable

    def _load_rows(
        self, model: Any, rows: list[tuple[int, Any]], using: str, progress: Progress
    ) -> tuple[int, int]:
        """3.x's way: `cqrs_save(data, sync=True)` per row, each in its own savepoint."""
        loaded = failed = 0
        for number, data in rows:
            if not isinstance(data, dict):
                failed += 1
                self._report(progress, f"Dump file can't be parsed: line {number}!")
                continue
            try:
                with transaction.atomic(using=using):
                    ok = model.cqrs_save(data, sync=True)
            except Exception as exc:  # noqa: BLE001 (report the row, keep loading)
                failed += 1
                self._report(progress, f"Unexpected error: line {number}! {exc}")
                continue
            if ok:
                loaded += 1
            else:
                failed += 1
                self._report(progress, f"Instance can't be saved: line {number}!")
        return loaded, failed

    def _report(self, progress: Progress, message: str) -> None:
        """A failed row, on stderr as 3.x writes it (without garbling a progress bar)."""
        if progress.enabled:
            progress.note(message)
        else:
            self.stderr.write(message)

    def _clear(self, model: Any, cqrs_id: str, using: str) -> None:
        try:
            deleted, _ = model._default_manager.using(using).all().delete()
        except DatabaseError as exc:
            raise CommandError(f"Delete operation fails!\n{type(exc).__name__}: {exc}") from None
        self.stderr.write(f"{cqrs_id}: {deleted} replica row(s) deleted (--clear).")


class _RowFailed(Exception):
    """A row of a bulk batch failed: roll the batch back and load it row by row."""


def _bulk_apply(model: Any) -> Any:
    """The consumer's bulk apply for `model`, or None when the model needs its own methods
    (see `dj_cqrs.replica.batch.supports_bulk`) or `CQRS_BULK_APPLY` is off."""
    from dj_cqrs.conf import replica_settings
    from dj_cqrs.replica.batch import apply_model_batch, supports_bulk

    if not replica_settings().get("CQRS_BULK_APPLY", True) or not supports_bulk(model):
        return None
    return apply_model_batch


def _sync_payload(model: Any, data: dict[str, Any]) -> TransportPayload:
    pk = data.get(model._meta.pk.name)
    return TransportPayload(
        signal_type=SignalType.SYNC, cqrs_id=model.CQRS_ID, instance_data=data, instance_pk=pk
    )


def _count_lines(name: str) -> int | None:
    """Rows in the dump file (for the progress bar's total): its lines minus the header."""
    try:
        with open(name, "rb") as file:
            return max(sum(1 for line in file if line.strip()) - 1, 0)
    except OSError:
        return None


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
