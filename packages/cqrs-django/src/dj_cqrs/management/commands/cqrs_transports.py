"""`manage.py cqrs_transports [--check]`: which CQRS transports are installed, and do they load."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cqrs_core.__main__ import list_transports
from cqrs_core.exceptions import CQRSError
from dj_cqrs import conf


class Command(BaseCommand):
    help = (
        "List installed CQRS transports (name, distribution and version, target). --check "
        "imports each one and reports problems (exit code 1 if any)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="Load every transport and report problems."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        check = options["check"]
        lines = list_transports(check=check)
        self.stdout.write("\n".join(lines) if lines else "No CQRS transports are installed.")
        try:
            spec = conf.transport_spec()
        except ImproperlyConfigured as exc:
            self.stdout.write(f"Configured: none ({exc})")
            spec = None
        else:
            self.stdout.write(f"Configured: CQRS['transport'] = {spec!r}")
        problems = [line for line in lines if "  ERROR: " in line]
        if check and spec is not None:
            try:
                cls = conf.transport_class()
            except (CQRSError, ImproperlyConfigured, ImportError) as exc:
                problems.append(spec)
                self.stdout.write(f"  ERROR: the configured transport cannot be loaded: {exc}")
            else:
                self.stdout.write(f"  ok: {cls.__module__}.{cls.__qualname__}")
        if problems:
            raise CommandError(f"{len(problems)} transport(s) failed to load (see ERROR above).")
