"""What the data commands share: common options, the transport check, progress setup."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cqrs_core.exceptions import CQRSError
from dj_cqrs import conf
from dj_cqrs.management._filters import positive
from dj_cqrs.management._progress import Progress

DEFAULT_BATCH = 10000


class DataCommand(BaseCommand):
    """Base of the sync/dump/diff commands.

    `stdin` may be given to `call_command` (a text stream) in place of the process's stdin.
    """

    stealth_options = ("stdin",)

    @staticmethod
    def add_cqrs_id(parser: CommandParser, help: str) -> None:
        parser.add_argument("--cqrs-id", "-cid", dest="cqrs_id", required=True, help=help)

    @staticmethod
    def add_filter(parser: CommandParser) -> None:
        parser.add_argument(
            "--filter",
            "-f",
            dest="filter",
            default=None,
            help="JSON object of queryset lookups, e.g. '{\"id__in\": [1, 2]}' "
            "(default: every row).",
        )

    @staticmethod
    def add_batch(parser: CommandParser, default: int = DEFAULT_BATCH) -> None:
        parser.add_argument(
            "--batch",
            "-b",
            dest="batch",
            type=int,
            default=default,
            help=f"Rows per batch (default {default}).",
        )

    @staticmethod
    def add_progress(parser: CommandParser) -> None:
        parser.add_argument(
            "--progress",
            "-p",
            dest="progress",
            action="store_true",
            help="Show progress on stderr (a bar with rate and ETA on a terminal, plain lines "
            "otherwise).",
        )

    @staticmethod
    def batch_size(options: dict[str, Any]) -> int:
        return positive(options["batch"], "--batch")

    def progress(self, options: dict[str, Any], total: int | None, label: str) -> Progress:
        return Progress(self.stderr, total, label=label, enabled=bool(options.get("progress")))

    @staticmethod
    def check_transport() -> None:
        """Build the transport now, so a bad setting fails before any row is read.

        A django-cqrs 3.x style transport class needs no building: events go through its
        `produce(payload)` as they did under 3.x.
        """
        try:
            if conf.legacy_transport_class() is not None:
                return
            conf.get_transport()
        except (CQRSError, ImproperlyConfigured, ImportError) as exc:
            raise CommandError(f"The CQRS transport cannot be used: {exc}") from None
