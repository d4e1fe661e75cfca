"""`manage.py cqrs_outbox`: how far behind the outbox is, purge of sent rows, and the events
the broker refused (set aside so that they hold back nothing): list, retry, drop."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

ACTIONS = ("show", "set-aside", "retry", "drop")


class Command(BaseCommand):
    help = (
        "Show the outbox backlog: pending events, age of the oldest, pending per CQRS_ID. "
        "--purge deletes sent rows older than CQRS['master']['outbox']['keep_days']."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "action",
            nargs="?",
            default="show",
            choices=ACTIONS,
            help="show (default): the backlog. set-aside: the events the broker refused, with "
            "the reason. retry: put set-aside events (IDS or --all) back in line for the relay. "
            "drop: delete unsent events IDS (they are never sent).",
        )
        parser.add_argument("ids", nargs="*", type=int, help="Outbox row ids (retry, drop).")
        parser.add_argument("--all", action="store_true", help="retry: every set-aside event.")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument("--json", action="store_true", help="One JSON object (monitoring).")
        parser.add_argument(
            "--purge", action="store_true", help="Delete sent rows past their retention."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from dj_cqrs.outbox.retention import backlog, purge
        from dj_cqrs.outbox.settings import outbox_settings

        using = options["database"]
        action = options["action"]
        if action != "show":
            self._act(action, using, options)
            return
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
                        "set_aside": state.set_aside,
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
        self.stdout.write(
            f"Set aside (refused by the broker): {state.set_aside}"
            + (" (see `cqrs_outbox set-aside`)" if state.set_aside else "")
        )
        self.stdout.write(f"Sent rows kept: {state.sent_kept}")
        for cqrs_id, count in sorted(state.by_cqrs_id.items()):
            self.stdout.write(f"  {cqrs_id}: {count}")

    def _act(self, action: str, using: str, options: dict[str, Any]) -> None:
        from dj_cqrs.outbox import retention

        ids: list[int] = options["ids"]
        if action == "set-aside":
            found = retention.set_aside_rows(using)
            for row in found:
                self.stdout.write(
                    f"{row.id}\t{row.signal_type}\t{row.cqrs_id}:{row.instance_pk}"
                    f"\tqueue={row.queue or '-'}\t{row.set_aside_at}\t{row.last_error}"
                )
            self.stderr.write(f"{len(found)} event(s) set aside.")
            return
        if action == "retry":
            if not ids and not options["all"]:
                raise CommandError("Give the ids to retry (see `cqrs_outbox set-aside`) or --all.")
            count = retention.retry(using, None if options["all"] else ids)
            self.stdout.write(f"{count} set-aside event(s) put back for the relay.")
            return
        if not ids:
            raise CommandError("Give the ids of the unsent events to drop.")
        count = retention.drop(using, ids)
        self.stdout.write(f"Dropped {count} unsent outbox event(s).")
