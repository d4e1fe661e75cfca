"""`manage.py cqrs_outbox`: how far behind the outbox is (and purge of sent rows)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS


class Command(BaseCommand):
    help = (
        "Show the outbox backlog: pending events, age of the oldest, pending per CQRS_ID. "
        "--purge deletes sent rows older than CQRS['master']['outbox']['keep_days']."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument("--json", action="store_true", help="One JSON object (monitoring).")
        parser.add_argument(
            "--purge", action="store_true", help="Delete sent rows past their retention."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from dj_cqrs.outbox.retention import backlog, purge
        from dj_cqrs.outbox.settings import outbox_settings

        using = options["database"]
        if options["purge"]:
            deleted = purge(using, outbox_settings().keep_days)
            self.stdout.write(f"Deleted {deleted} sent outbox row(s).")
        state = backlog(using)
        age = state.oldest_age()
        seconds = round(age.total_seconds(), 3) if age is not None else None
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "pending": state.pending,
                        "oldest_age_seconds": seconds,
                        "oldest": state.oldest.isoformat() if state.oldest else None,
                        "failing": state.failing,
                        "sent_kept": state.sent_kept,
                        "pending_by_cqrs_id": state.by_cqrs_id,
                    }
                )
            )
            return
        self.stdout.write(f"Pending events: {state.pending}")
        self.stdout.write(
            f"Oldest pending: {'-' if seconds is None else f'{seconds:.1f}s old ({state.oldest})'}"
        )
        self.stdout.write(f"Pending after a failed send: {state.failing}")
        self.stdout.write(f"Sent rows kept: {state.sent_kept}")
        for cqrs_id, count in sorted(state.by_cqrs_id.items()):
            self.stdout.write(f"  {cqrs_id}: {count}")
