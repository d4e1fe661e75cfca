"""`manage.py cqrs_bulk_dump`: write master rows to a file that `cqrs_bulk_load` reads.

Format (3.x's, byte for byte): line 1 the CQRS_ID, then `\n` and one JSON object per row (the
master's `to_cqrs_dict()`), in primary-key order, without a final line end. Messages go to
stderr as in 3.x (`Processing N records with batch size B` with --progress, `Dump record failed
for pk=...`, the `Done!` block).
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from django.core.management.base import CommandError, CommandParser

from dj_cqrs.management._base import DataCommand
from dj_cqrs.management._batching import instance_batches
from dj_cqrs.management._filters import master_model
from dj_cqrs.management._pipes import dumps


class Command(DataCommand):
    help = (
        "Dump master rows to a file (line 1: the CQRS_ID, then one JSON object per row) for "
        "cqrs_bulk_load on a replica. -o - writes to stdout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # 3.x spells the short form -c here (-cid in the other commands): accept both.
        parser.add_argument(
            "--cqrs-id",
            "-c",
            "-cid",
            dest="cqrs_id",
            required=True,
            help="CQRS_ID of the master model to dump.",
        )
        parser.add_argument(
            "--output",
            "-o",
            dest="output",
            default=None,
            help="File to write, or - for stdout (default: <CQRS_ID>.dump).",
        )
        self.add_batch(parser)
        self.add_progress(parser)
        parser.add_argument(
            "--force", "-f", action="store_true", help="Overwrite the output file if it exists."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        model = master_model(options["cqrs_id"])
        batch = self.batch_size(options)
        queryset = model.relate_cqrs_serialization(model._default_manager.all())
        output = options["output"] or f"{model.CQRS_ID}.dump"
        to_stdout = output == "-"
        if not to_stdout and os.path.exists(output) and not options["force"]:
            raise CommandError(f"File {output} exists!\nGive --force to overwrite it.")

        total = queryset.count() if options["progress"] else None
        if total is not None:
            self.stderr.write(f"Processing {total} records with batch size {batch}")
        progress = self.progress(options, total, f"{model.CQRS_ID}: dumped")
        partial = f"{output}.partial"
        stream: IO[str]
        if to_stdout:
            # The stream OutputWrapper wraps (`_out`, private): 3.x wrote no line endings.
            stream = getattr(self.stdout, "_out", sys.stdout)
        else:
            try:
                stream = open(partial, "w", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise CommandError(f"Cannot write {partial!r}: {exc.strerror or exc}.") from None
        written = failed = 0
        try:
            stream.write(options["cqrs_id"])  # the model's CQRS_ID: it was found by it
            for instances in instance_batches(queryset, batch):
                lines = []
                batch_failed = 0
                for instance in instances:
                    try:
                        lines.append(dumps(instance.to_cqrs_dict(instance._state.db, sync=True)))
                    except Exception as exc:  # noqa: BLE001 (report the row, keep dumping)
                        batch_failed += 1
                        progress.note(
                            f"\nDump record failed for pk={instance.pk}: "
                            f"{type(exc).__name__}: {exc}"
                        )
                if lines:
                    stream.write("".join("\n" + line for line in lines))
                written += len(lines)
                failed += batch_failed
                progress.advance(len(instances), failed=batch_failed)
            stream.flush()
        except BaseException:
            if not to_stdout:
                stream.close()
                os.unlink(partial)
            raise
        if not to_stdout:
            stream.close()
            os.replace(partial, output)  # readers never see a half-written dump
        progress.finish()
        processed = written + failed
        self.stderr.write(
            f"Done!\n{written} instance(s) saved.\n{processed} instance(s) processed."
        )
        if failed:
            raise CommandError(
                f"{failed} row(s) of {model.CQRS_ID!r} could not be serialized (reported above) "
                "and are missing from the dump."
            )
