"""`manage.py cqrs_consume`: apply CQRS events received from masters to replica models."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cqrs_core.exceptions import CQRSError
from dj_cqrs.consumer import resolve_cqrs_ids


class Command(BaseCommand):
    help = (
        "Consume CQRS events and apply them to replica models. With -w N, N worker processes "
        "are kept running; SIGTERM or SIGINT stops them cleanly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-w", "--workers", type=int, default=1, help="Number of worker processes (default 1)."
        )
        parser.add_argument(
            "--cqrs-id",
            "-cid",
            dest="cqrs_ids",
            action="extend",
            nargs="+",
            default=None,
            metavar="ID",
            help="Consume only these CQRS_IDs (repeatable; default: every replica model).",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart the workers when a .py file under the current directory changes.",
        )
        parser.add_argument(
            "--ignore-paths",
            default="",
            help="Comma-separated paths that --reload does not watch.",
        )
        parser.add_argument(
            "--sigint-timeout",
            type=float,
            default=5.0,
            help="Seconds a worker gets to finish its batch after being asked to stop, "
            "before it is killed (default 5).",
        )
        parser.add_argument(
            "--sigkill-timeout",
            type=float,
            default=1.0,
            help="Seconds to wait for a killed worker to exit (default 1).",
        )
        parser.add_argument(
            "--liveness-file",
            default=None,
            help="File touched by every worker at least once a second while it is healthy.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        workers = options["workers"]
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        try:
            cqrs_ids = resolve_cqrs_ids(options["cqrs_ids"])
            from dj_cqrs.conf import transport_class

            transport_class()
        except (CQRSError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc
        from dj_cqrs.replica.worker import Supervisor, run_worker

        if workers == 1 and not options["reload"]:
            run_worker(cqrs_ids, liveness_file=options["liveness_file"], out=self.stdout)
            return
        settings_module = getattr(settings, "SETTINGS_MODULE", None)
        if not settings_module:
            raise CommandError(
                "Worker processes need DJANGO_SETTINGS_MODULE (settings.configure() cannot be "
                "passed to them); run with -w 1 or set the environment variable."
            )
        Supervisor(
            cqrs_ids,
            workers=workers,
            settings_module=settings_module,
            sigint_timeout=options["sigint_timeout"],
            sigkill_timeout=options["sigkill_timeout"],
            liveness_file=options["liveness_file"],
            reload=options["reload"],
            ignore_paths=[p.strip() for p in options["ignore_paths"].split(",")],
            out=self.stdout,
        ).run()
