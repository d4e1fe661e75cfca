"""`manage.py cqrs_dead_letters dump|retry|purge`: inspect and replay this replica's dead letters.

Uses the transport's non-blocking dead-letter operations. Each operation also runs under a
`--timeout`, so an unreachable broker ends the command with an error instead of hanging.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cqrs_core.exceptions import CQRSError
from cqrs_core.messages import DeadLetter
from dj_cqrs import conf

logger = logging.getLogger("django-cqrs")


def as_text(body: bytes) -> str:
    """The body as a str that encodes back to the same bytes (UTF-8, surrogateescape)."""
    return body.decode("utf-8", errors="surrogateescape")


def printable(text: str) -> str:
    """`text` with what could act on a terminal written as JSON escapes (`\\u001b`, `\\u202e`).

    Message bodies come from other services: ESC sequences could retitle or clear the
    operator's terminal or fake output, CR and backspace overwrite what was printed, and bidi
    controls reorder it. JSON escapes keep a JSON body valid JSON with the same meaning.
    """
    return "".join(
        char
        if char.isprintable() and not 0xD800 <= ord(char) <= 0xDFFF
        else "".join(f"\\u{unit:04x}" for unit in _utf16_units(char))
        for char in text
    )


def _utf16_units(char: str) -> list[int]:
    code = ord(char)
    if code <= 0xFFFF:
        return [code]
    code -= 0x10000
    return [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]


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
        "Dead letters of this replica's queue: dump (one body per line on stdout, the reason "
        "on stderr, control characters escaped; --format json for exact bodies), retry (send "
        "them back to the queue), purge (delete them)."
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
            "--format",
            choices=["text", "json"],
            default="text",
            help="dump: text (default; control characters shown as escapes, safe on a "
            "terminal) or json (one object per line, {number, reason, body}, the body exact: "
            "bytes that are not UTF-8 come back with Python's surrogateescape).",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="Seconds after which the command gives up (default 60).",
        )

    def _dump(self, letters: list[DeadLetter], fmt: str) -> None:
        for number, letter in enumerate(letters, start=1):
            if fmt == "json":
                record = {"number": number, "reason": letter.reason, "body": as_text(letter.body)}
                self.stdout.write(json.dumps(record))  # ensure_ascii: every byte survives
            else:
                self.stdout.write(printable(as_text(letter.body).strip()))
                self.stderr.write(f"#{number} {printable(letter.reason or 'no reason recorded')}")
        self.stderr.write(f"{len(letters)} dead letter(s).")

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
            self._dump(result, options["format"])
        elif action == "retry":
            self.stdout.write(f"{result} dead letter(s) sent back to the queue.")
        else:
            self.stdout.write(f"{result} dead letter(s) deleted.")
