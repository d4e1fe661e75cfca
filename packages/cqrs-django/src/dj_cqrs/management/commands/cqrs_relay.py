"""`manage.py cqrs_relay`: send the events the master's fast path left in the outbox."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from cqrs_core.exceptions import CQRSError
from dj_cqrs import conf
from dj_cqrs.observability.server import serve_relay

logger = logging.getLogger("django-cqrs")

DEFAULT_ONCE_TIMEOUT = 300.0
"""Seconds `--once` keeps trying (a crashed publisher's claims run out within `lease`)."""


def banner(using: str, *, once: bool) -> str:
    """Where the relay publishes: transport, URL without its password, exchange, database."""
    from django.conf import settings

    options = getattr(settings, "CQRS", {}) or {}
    transport = options.get("transport", "?")
    name = transport if isinstance(transport, str) else getattr(transport, "__name__", "?")
    parts = [f"transport {name}"]
    if options.get("url"):
        parts.append(f"url {mask_url(str(options['url']))}")
    elif options.get("host"):
        parts.append(f"host {options['host']}:{options.get('port', '')}")
    if options.get("exchange"):
        parts.append(f"exchange {options['exchange']}")
    parts.append(f"database {using!r}")
    parts.append("until the outbox is empty" if once else "until stopped")
    return ", ".join(parts)


def mask_url(url: str) -> str:
    """`url` with its password replaced by `***` (it goes to the logs)."""
    try:
        split = urlsplit(url)
        if split.password is None:
            return url
        host = split.hostname or ""
        if split.port is not None:
            host += f":{split.port}"
        return urlunsplit(split._replace(netloc=f"{split.username or ''}:***@{host}"))
    except ValueError:
        return "<unparsable url>"


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
            "--timeout",
            type=float,
            default=DEFAULT_ONCE_TIMEOUT,
            metavar="SECONDS",
            help="With --once: give up after this long (broker down) and exit with status 1 "
            f"if events are still pending (default {DEFAULT_ONCE_TIMEOUT:g}).",
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
        started = f"CQRS relay started: {banner(options['database'], once=options['once'])}"
        if verbosity >= 1:  # beside "stopped after sending N event(s)"
            self.stdout.write(started)
        else:
            logger.info(started)
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: relay.stop())
        timer = None
        if options["once"]:  # cron must not pile up relays while the broker is down
            timer = threading.Timer(max(options["timeout"], 0.0), relay.stop)
            timer.daemon = True
            timer.start()
        try:
            sent = relay.run(until_empty=options["once"])
        finally:
            if timer is not None:
                timer.cancel()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            conf.reset_transport()
            if server is not None:
                server.close()
        if verbosity >= 1:
            self.stdout.write(f"CQRS relay stopped after sending {sent} event(s).")
        if options["once"]:
            self._check_done(relay, options["timeout"])

    def _check_done(self, relay: Any, timeout: float) -> None:
        """Exit status 1 if `--once` left sendable events behind (broker down, timeout)."""
        left = relay.pending_count()
        if left:
            raise CommandError(
                f"{left} outbox event(s) are still pending after {timeout:g}s (see the log: "
                "is the broker reachable?); run the relay again, or raise --timeout."
            )
