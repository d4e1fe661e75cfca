"""`manage.py cqrs_dead_letters dump|retry|purge`: inspect and replay this replica's dead letters.

Uses the transport's non-blocking dead-letter operations. Each operation also runs under a
`--timeout`, so an unreachable broker ends the command with an error instead of hanging.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cqrs_core.exceptions import CQRSError
from dj_cqrs import conf

logger = logging.getLogger("django-cqrs")


def _with_timeout(operation: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run `operation` in a helper thread; CommandError if it takes longer than `timeout`."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = operation()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            result["error"] = exc
        finally:
            try:
                conf.reset_transport()  # this thread's transport: close it here, where it lives
            except Exception as exc:  # noqa: BLE001 (the operation's result matters more)
                logger.warning("Closing the CQRS transport failed: %s", exc)

    worker = threading.Thread(target=run, name="cqrs-dead-letters", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise CommandError(
            f"{what} did not finish within {timeout:g} s; is the broker reachable? "
            "Raise --timeout for very long dead-letter queues."
        )
    if "error" in result:
        raise result["error"]
    return result.get("value")


class Command(BaseCommand):
    help = (
        "Dead letters of this replica's queue: dump (one JSON body per line on stdout, the "
        "reason on stderr), retry (send them back to the queue), purge (delete them)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["dump", "retry", "purge"])
        parser.add_argument(
            "--limit",
            "-l",
            type=int,
            default=None,
            help="At most this many dead letters (dump and retry; default: all).",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="Seconds after which the command gives up (default 60).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action, limit, timeout = options["action"], options["limit"], options["timeout"]
        if limit is not None and limit < 1:
            raise CommandError(f"--limit must be a positive number, got {limit}.")
        if timeout <= 0:
            raise CommandError(f"--timeout must be positive, got {timeout:g}.")
        operations: dict[str, Callable[[], Any]] = {
            "dump": lambda: conf.get_transport().dead_letters(limit=limit),
            "retry": lambda: conf.get_transport().retry_dead_letters(limit=limit),
            "purge": lambda: conf.get_transport().purge_dead_letters(),
        }
        try:
            result = _with_timeout(operations[action], timeout, f"cqrs_dead_letters {action}")
        except NotImplementedError as exc:
            raise CommandError(f"Cannot {action} dead letters: {exc}.") from None
        except (CQRSError, ImproperlyConfigured, ImportError, OSError) as exc:
            raise CommandError(f"Cannot {action} dead letters: {exc}") from None
        if action == "dump":
            for number, letter in enumerate(result, start=1):
                self.stdout.write(letter.body.decode("utf-8", errors="replace").strip())
                self.stderr.write(f"#{number} {letter.reason or 'no reason recorded'}")
            self.stderr.write(f"{len(result)} dead letter(s).")
        elif action == "retry":
            self.stdout.write(f"{result} dead letter(s) sent back to the queue.")
        else:
            self.stdout.write(f"{result} dead letter(s) deleted.")
