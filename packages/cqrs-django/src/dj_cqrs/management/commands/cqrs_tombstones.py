"""`manage.py cqrs_tombstones stats|purge`: see and trim the replica's tombstones.

`cqrs_consume` purges them by itself once an hour; this command is for a one-off purge, a
shorter retention, or a service whose consumer runs elsewhere.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.db.models import Count, Max, Min

from dj_cqrs.replica import retention
from dj_cqrs.replica.tombstone import Tombstone


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
    return seconds


class Command(BaseCommand):
    help = (
        "Tombstones (deleted replica rows remembered so that late events cannot re-create "
        "them): stats (count per CQRS_ID and database), purge (delete those older than the "
        "retention, CQRS['replica']['tombstone_retention'], or --older-than)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["stats", "purge"])
        parser.add_argument(
            "--older-than",
            type=_seconds,
            default=None,
            metavar="SECONDS",
            help="purge: delete tombstones older than this (default: the retention setting).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="purge: only count what would be deleted.",
        )
        parser.add_argument(
            "--database",
            action="append",
            default=None,
            help="Only this database alias (repeatable; default: every replica model's).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        databases = options["database"] or retention.replica_databases()
        try:
            if options["action"] == "stats":
                self._stats(databases)
            else:
                self._purge(databases, options["older_than"], options["dry_run"])
        except DatabaseError as exc:
            raise CommandError(
                f"Cannot read the tombstone table ({exc}); did you run `manage.py migrate`?"
            ) from None

    def _stats(self, databases: list[str]) -> None:
        try:
            keep = retention.retention()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        shown = "forever (no automatic purge)" if keep is None else f"{keep:.0f} s"
        self.stdout.write(f"retention: {shown}")
        for using in databases:
            rows = (
                Tombstone.objects.using(using)
                .values("cqrs_id")
                .annotate(count=Count("pk"), oldest=Min("deleted_at"), newest=Max("deleted_at"))
                .order_by("cqrs_id")
            )
            total = 0
            for row in rows:
                total += row["count"]
                self.stdout.write(
                    f"{using}\t{row['cqrs_id']}\t{row['count']}\t"
                    f"oldest {row['oldest']:%Y-%m-%d %H:%M:%S}\t"
                    f"newest {row['newest']:%Y-%m-%d %H:%M:%S}"
                )
            self.stdout.write(f"{using}\ttotal\t{total}")

    def _purge(self, databases: list[str], older_than: float | None, dry_run: bool) -> None:
        if older_than is None:
            try:
                older_than = retention.retention()
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            if older_than is None:
                raise CommandError(
                    "Tombstones are kept forever: CQRS['master']['CQRS_MESSAGE_TTL'] or "
                    "CQRS['replica']['CQRS_MAX_RETRIES'] is None (a late message can always "
                    "arrive), or CQRS['replica']['tombstone_retention'] is None. Pass "
                    "--older-than SECONDS if you know no older message can still arrive."
                )
        before = retention.cutoff(older_than)
        for using in databases:
            if dry_run:
                count = Tombstone.objects.using(using).filter(deleted_at__lt=before).count()
                self.stdout.write(
                    f"{using}: {count} tombstone(s) older than {older_than:.0f} s would be "
                    "deleted (dry run)."
                )
            else:
                count, _ = retention.purge(using, before)
                self.stdout.write(
                    f"{using}: {count} tombstone(s) older than {older_than:.0f} s deleted."
                )
