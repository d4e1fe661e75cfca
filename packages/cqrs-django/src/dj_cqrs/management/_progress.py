"""Progress reporting of long management commands.

On a terminal the line is redrawn in place (bar, count, rate, ETA); in logs and pipes a plain
line is written every few seconds, so cron output stays readable. Progress goes to stderr so
that stdout can carry data (`cqrs_bulk_dump -o -`, the diff pipelines).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any

_BAR_WIDTH = 30


def format_duration(seconds: float) -> str:
    """`H:MM:SS` (the ETA and elapsed time shown to users)."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _raw(stream: Any) -> Any:
    """The file under a Django `OutputWrapper` (it would add colours and newlines)."""
    return getattr(stream, "_out", stream)


def is_terminal(stream: Any) -> bool:
    isatty = getattr(_raw(stream), "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed file
        return False


class Progress:
    """Counts processed and failed items of a run and shows it when `enabled`.

    Args:
        stream: Where to write (a file or a Django `OutputWrapper`).
        total: Expected number of items (None when unknown: no bar, no ETA).
        label: What is counted, e.g. `"author: synced"`.
        enabled: False counts silently (the summary is still available).
        tty: Force the terminal (True) or plain-line (False) style; default: detect.
        interval: Seconds between plain lines (terminal redraws are limited to 10 per second).
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        stream: IO[str] | Any,
        total: int | None,
        *,
        label: str,
        enabled: bool = True,
        tty: bool | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = _raw(stream)
        self.total = total
        self.label = label
        self.enabled = enabled
        self.tty = is_terminal(stream) if tty is None else tty
        self.interval = 0.1 if self.tty else interval
        self.clock = clock
        self.done = 0
        self.failed = 0
        self.started = clock()
        self._last_shown = self.started
        self._finished = False

    def advance(self, count: int = 1, *, failed: int = 0) -> None:
        """Record `count` more items handled, `failed` of which failed."""
        self.done += count
        self.failed += failed
        if self.enabled and self.clock() - self._last_shown >= self.interval:
            self._show()

    @property
    def rate(self) -> float:
        """Items per second since the start."""
        elapsed = self.clock() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left, or None when the total or the rate is unknown."""
        rate = self.rate
        if self.total is None or rate <= 0:
            return None
        return max(0, self.total - self.done) / rate

    def line(self) -> str:
        """The status text, e.g. `author: synced 500/2000 (25.0%), 1234.5/s, ETA 0:00:01`."""
        parts = [f"{self.label} {self.done}"]
        if self.total is not None:
            parts[0] += f"/{self.total}"
            if self.total:
                parts[0] += f" ({100 * min(self.done, self.total) / self.total:.1f}%)"
        parts.append(f"{self.rate:.1f}/s")
        if self._finished:
            parts.append(f"in {format_duration(self.clock() - self.started)}")
        else:
            eta = self.eta()
            if eta is not None:
                parts.append(f"ETA {format_duration(eta)}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)

    def _bar(self) -> str:
        if not self.total:
            return ""
        filled = int(_BAR_WIDTH * min(self.done, self.total) / self.total)
        return "[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "] "

    def _show(self) -> None:
        self._last_shown = self.clock()
        if self.tty:
            self.out.write("\r\x1b[2K" + self._bar() + self.line())
        else:
            self.out.write(self.line() + "\n")
        self.out.flush()

    def note(self, message: str) -> None:
        """Write a message (a failed row...) without garbling the terminal bar."""
        if self.enabled and self.tty:
            self.out.write("\r\x1b[2K")
        self.out.write(message.rstrip("\n") + "\n")
        self.out.flush()

    def finish(self) -> None:
        """Show the final state (once)."""
        if self._finished:
            return
        self._finished = True
        if self.enabled:
            self._show()
            if self.tty:
                self.out.write("\n")
                self.out.flush()
