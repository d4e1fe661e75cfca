"""`manage.py cqrs_consume`: apply CQRS events received from masters to replica models."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cqrs_core.exceptions import CQRSError
from dj_cqrs.consumer import resolve_cqrs_ids
from dj_cqrs.observability.server import serve_consumer
from dj_cqrs.replica.worker import Supervisor


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {value!r}")
    return seconds


class Command(BaseCommand):
    help = (
        "Consume CQRS events and apply them to replica models. With -w N, N worker processes "
        "are kept running; SIGTERM or SIGINT lets the batch in hand finish, then exits."
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
            "--shutdown-timeout",
            "--sigint-timeout",
            dest="shutdown_timeout",
            type=_seconds,
            default=5.0,
            metavar="S",
            help="On SIGTERM/SIGINT, seconds the batch in hand gets to finish and be "
            "acknowledged before the worker is killed (default 5; --sigint-timeout is the "
            "django-cqrs name).",
        )
        parser.add_argument(
            "--sigkill-timeout",
            type=_seconds,
            default=1.0,
            metavar="S",
            help="Seconds to wait for a killed worker to exit (default 1).",
        )
        parser.add_argument(
            "--liveness-file",
            default=None,
            metavar="PATH",
            help="File touched after every batch and at least once a second while idle; with "
            "-w N, touched by the supervisor when every worker has ticked.",
        )
        parser.add_argument(
            "--readiness-file",
            default=None,
            metavar="PATH",
            help="File that exists while the consumer is connected and bound (with -w N: every "
            "worker); removed when shutdown starts and on exit.",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            metavar="PORT",
            help="Serve /metrics, /livez and /readyz on this port (overrides "
            "CQRS['metrics']['port']; needs cqrs-django[prometheus]).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        workers = options["workers"]
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        from dj_cqrs import conf

        try:
            cqrs_ids = resolve_cqrs_ids(options["cqrs_ids"])
            legacy = conf.legacy_transport_class()
            if legacy is None:
                conf.transport_class()
        except (CQRSError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc
        if legacy is not None:
            self._consume_legacy(legacy, cqrs_ids, options)
            return
        from dj_cqrs.replica.worker import run_worker

        serve_consumer(options, supervised=workers > 1 or options["reload"], out=self.stdout)
        if workers == 1 and not options["reload"]:
            run_worker(
                cqrs_ids,
                liveness_file=options["liveness_file"],
                readiness_file=options["readiness_file"],
                shutdown_timeout=options["shutdown_timeout"],
                out=self.stdout,
            )
            return
        settings_module = getattr(settings, "SETTINGS_MODULE", None)
        if not settings_module:
            raise CommandError(
                "Worker processes need DJANGO_SETTINGS_MODULE (settings.configure() cannot be "
                "passed to them); run with -w 1 or set the environment variable."
            )
        clean = Supervisor(
            cqrs_ids,
            workers=workers,
            settings_module=settings_module,
            shutdown_timeout=options["shutdown_timeout"],
            sigkill_timeout=options["sigkill_timeout"],
            liveness_file=options["liveness_file"],
            readiness_file=options["readiness_file"],
            reload=options["reload"],
            ignore_paths=[p.strip() for p in options["ignore_paths"].split(",")],
            out=self.stdout,
        ).run()
        if not clean:
            raise CommandError(
                "Some workers did not finish within --shutdown-timeout and were killed; their "
                "unacknowledged messages will be delivered again."
            )

    def _consume_legacy(self, legacy: type, cqrs_ids: list[str], options: dict[str, Any]) -> None:
        """A 3.x-style transport class consumes by itself: `consume(cqrs_ids=...)` per worker.

        As in 3.x, `cqrs_ids` is passed only when `--cqrs-id` was given; with -w N or --reload,
        each worker process calls it (the supervisor restarts workers that exit).
        """
        if options["liveness_file"] or options["readiness_file"]:
            raise CommandError(
                f"--liveness-file and --readiness-file need a cqrs-core transport; "
                f"CQRS['transport'] is the 3.x-style class {legacy.__qualname__}."
            )
        kwargs: dict[str, Any] = {}
        if options["cqrs_ids"]:
            kwargs["cqrs_ids"] = set(cqrs_ids)
        if options["workers"] == 1 and not options["reload"]:
            legacy.consume(**kwargs)  # type: ignore[attr-defined]
            return
        settings_module = getattr(settings, "SETTINGS_MODULE", None)
        if not settings_module:
            raise CommandError(
                "Worker processes need DJANGO_SETTINGS_MODULE (settings.configure() cannot be "
                "passed to them); run with -w 1 or set the environment variable."
            )
        _LegacySupervisor(
            kwargs,
            cqrs_ids,
            workers=options["workers"],
            settings_module=settings_module,
            shutdown_timeout=options["shutdown_timeout"],
            sigkill_timeout=options["sigkill_timeout"],
            reload=options["reload"],
            ignore_paths=[p.strip() for p in options["ignore_paths"].split(",")],
            out=self.stdout,
        ).run()


def legacy_worker_main(settings_module: str, consume_kwargs: dict[str, Any]) -> None:
    """Entry point of a spawned worker process for a 3.x-style transport class."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()
    from dj_cqrs.transport import current_transport

    current_transport.consume(**consume_kwargs)


class _LegacySupervisor(Supervisor):
    """The supervisor of `cqrs_consume -w N`, starting workers that run the 3.x-style class."""

    def __init__(self, consume_kwargs: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consume_kwargs = consume_kwargs

    def _start(self, slot: Any) -> None:
        slot.heartbeat = None  # the class knows nothing of probes
        slot.seen_ticks = 0
        slot.process = self.context.Process(
            target=legacy_worker_main,
            args=(self.settings_module, self.consume_kwargs),
            name=f"cqrs-worker-{slot.number}",
        )
        slot.process.start()
        slot.started = time.monotonic()
