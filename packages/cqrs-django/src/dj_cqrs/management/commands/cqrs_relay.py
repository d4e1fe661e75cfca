"""`manage.py cqrs_relay`: send the events the master's fast path left in the outbox."""

from __future__ import annotations

import signal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from cqrs_core.exceptions import CQRSError
from dj_cqrs import conf
from dj_cqrs.observability.server import serve_relay


class Command(BaseCommand):
    help = (
        "Send pending outbox events to the broker, in per-row commit order, until stopped "
        "(SIGTERM/SIGINT). Several relays may run at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database whose outbox is sent."
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Send what is pending now and exit (e.g. from cron) instead of running forever.",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=None,
            help="Override CQRS['master']['outbox']['grace'] (seconds a fresh row is left to "
            "the process that wrote it).",
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
        import dataclasses

        from dj_cqrs.outbox.relay import Relay
        from dj_cqrs.outbox.settings import outbox_settings

        try:
            settings = outbox_settings()
            conf.transport_class()
        except (ImproperlyConfigured, CQRSError) as exc:
            raise CommandError(str(exc)) from exc
        if options["grace"] is not None:
            settings = dataclasses.replace(settings, grace=max(options["grace"], 0.0))
        verbosity = options["verbosity"]

        def report(count: int) -> None:
            if verbosity >= 2:
                self.stdout.write(f"sent {count} event(s)")

        relay = Relay(options["database"], settings=settings, on_batch=report)
        server = serve_relay(options, options["database"], out=self.stdout)
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: relay.stop())
        try:
            sent = relay.run(until_empty=options["once"])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            conf.reset_transport()
            if server is not None:
                server.close()
        if verbosity >= 1:
            self.stdout.write(f"CQRS relay stopped after sending {sent} event(s).")
