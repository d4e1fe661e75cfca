"""Failed applies: how they reach the caller, whether retrying can help, how often to log them.

django-cqrs 3.x's public replica methods (`cqrs_save`, `cqrs_delete` and the `ReplicaManager`
methods) log bad data and database errors and return None (False for deletes); projects call
them directly and rely on that. The consumer needs the reason instead, to dead-letter or retry
the message with it, so it applies inside `raising_errors()`, where the same methods raise.
A context variable rather than a parameter: user overrides of `cqrs_save` that call `super()`
pass the mode through without knowing about it.

`classify` sorts a failure for the consumer: a message whose data can never fit is
dead-lettered at once instead of being retried `CQRS_MAX_RETRIES` times with a traceback each
time; `RepeatFilter` keeps one traceback per distinct error per minute in the log.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.db import (
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
)

from dj_cqrs.replica.mapping import BadData

logger = logging.getLogger("django-cqrs")

APPLY_ERRORS: tuple[type[Exception], ...] = (BadData, Error, ValidationError)
"""What the public methods turn into a logged None/False outside `raising_errors()`."""

_raising: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dj_cqrs_replica_raising", default=False
)


def raising() -> bool:
    """True inside `raising_errors()`: apply errors propagate instead of being logged."""
    return _raising.get()


@contextlib.contextmanager
def raising_errors() -> Iterator[None]:
    """Make the public replica methods raise apply errors (as the consumer needs) in this block."""
    token = _raising.set(True)
    try:
        yield
    finally:
        _raising.reset(token)


def log_apply_error(action: str, model: Any, exc: BaseException, pk: Any = None) -> None:
    """Log an apply error the way the public methods report it (django-cqrs logs, no raise)."""
    logger.error(
        "CQRS %s error: pk = %s (%s): %s: %s",
        action,
        pk,
        getattr(model, "CQRS_ID", None),
        type(exc).__name__,
        exc,
    )


# -- which failures are worth retrying ---------------------------------------------------------


class Kind(str, enum.Enum):
    """What a failed apply says about retrying the same message."""

    BAD_MESSAGE = "bad message"
    """The message can never be applied as it is (a value that does not fit its column, a
    missing required field): retrying only repeats the failure, so it is dead-lettered at once."""
    DEPLOYMENT = "deployment"
    """The replica's schema does not match its models (missing table or column): every message
    fails until someone migrates. Dead-lettered at once by the stock retry policy, with the
    fix in the reason, so it does not burn retries and log a traceback per attempt."""
    TRANSIENT = "transient"
    """The database may accept it later (lost connection, deadlock, lock or statement timeout,
    a unique or foreign key clash that a later event can resolve): retried."""
    UNKNOWN = "unknown"
    """Anything else (an error of the project's own hooks): the model's retry policy decides."""


_BAD_SQLSTATES = ("22", "23502", "23514")
"""PostgreSQL: data exceptions (class 22), NOT NULL and CHECK violations."""
_SCHEMA_SQLSTATES = ("42P01", "42703", "42P02")
"""PostgreSQL: undefined table, column, parameter."""
_BAD_MYSQL_CODES = frozenset((1048, 1264, 1265, 1292, 1366, 1406, 3819, 4025))
"""MySQL/MariaDB: column cannot be null, out of range, truncated, incorrect value, too long,
check constraint violated (3819 MySQL, 4025 MariaDB)."""
_SCHEMA_MYSQL_CODES = frozenset((1054, 1146))
"""MySQL/MariaDB: unknown column, table does not exist."""
_BAD_SQLITE_TEXTS = ("NOT NULL constraint failed", "CHECK constraint failed", "datatype mismatch")
_SCHEMA_SQLITE_TEXTS = ("no such table", "no such column", "has no column named")


def classify(exc: BaseException | None) -> Kind:
    """Sort an apply failure by whether retrying the same message can help (see `Kind`)."""
    if exc is None:
        return Kind.UNKNOWN
    if isinstance(exc, (BadData, ValidationError, DataError)):
        return Kind.BAD_MESSAGE
    if not isinstance(exc, Error):
        return Kind.UNKNOWN
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if isinstance(sqlstate, str):
        if sqlstate.startswith(_BAD_SQLSTATES):
            return Kind.BAD_MESSAGE
        if sqlstate.startswith(_SCHEMA_SQLSTATES):
            return Kind.DEPLOYMENT
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code in _BAD_MYSQL_CODES:
        return Kind.BAD_MESSAGE
    if code in _SCHEMA_MYSQL_CODES:
        return Kind.DEPLOYMENT
    text = str(exc)
    if any(part in text for part in _BAD_SQLITE_TEXTS):
        return Kind.BAD_MESSAGE
    if any(part in text for part in _SCHEMA_SQLITE_TEXTS):
        return Kind.DEPLOYMENT
    if isinstance(exc, (OperationalError, InterfaceError, IntegrityError, InternalError)):
        return Kind.TRANSIENT
    return Kind.DEPLOYMENT if isinstance(exc, ProgrammingError) else Kind.UNKNOWN


def never_retried(exc: BaseException | None) -> bool:
    """True if the stock retry policy dead-letters this failure at once (see `Kind`)."""
    return classify(exc) in (Kind.BAD_MESSAGE, Kind.DEPLOYMENT)


# -- saying each thing once --------------------------------------------------------------------

REPEAT_WINDOW = 60.0
"""Seconds during which a repeat of one distinct error is counted instead of logged in full."""


class RepeatFilter:
    """Decides when a distinct error gets its full report (traceback, hint) again.

    The first occurrence of a key is reported; repeats within `window` seconds are counted,
    and the next report after the window says how many there were. Per process; not locked
    (the consumer applies batches in one thread; a race only costs an extra report).
    """

    def __init__(self, window: float = REPEAT_WINDOW, clock: Any = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._seen: dict[str, tuple[float, int]] = {}

    def report(self, key: str) -> int | None:
        """None to stay quiet, else the number of repeats left unreported since the last report."""
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        if len(self._seen) > 1000:  # distinct errors with ever-changing texts: forget old ones
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        self._seen[key] = (now, 0)
        return 0 if last is None else last[1]


def error_key(model: Any, exc: BaseException) -> str:
    """What makes two failures 'the same error' for `RepeatFilter`: model, type, text without
    its numbers and quoted values (so one error on many rows counts as one)."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", str(exc))[:300]
    return f"{getattr(model, 'CQRS_ID', model)}|{type(exc).__qualname__}|{text}"


SCHEMA_HINT = (
    "the replica database lacks a table or column its models use: run `manage.py migrate`, "
    "then replay these messages with `cqrs_dead_letters retry`"
)

_repeats = RepeatFilter()


def log_failure(model: Any, what: str, retries: int, exc: BaseException, kind: Kind) -> None:
    """One line per failed message (`what` names it); a traceback once per distinct error per
    `REPEAT_WINDOW`, none for bad data (the reason says it all)."""
    reason = f"{type(exc).__name__}: {exc}"
    if kind is Kind.BAD_MESSAGE:
        # `cqrs_consume` logs every dead letter once with its reason (`dead-lettered ...`):
        # saying it here as well would double the lines of a bad message.
        logger.debug("%s rejected, dead-lettered without retry: %s", what, reason)
        return
    repeats = _repeats.report(error_key(model, exc))
    if repeats is None:
        logger.error("%s failed (retries %d): %s", what, retries, reason)
        return
    logger.error(
        "%s failed (retries %d): %s%s%s",
        what,
        retries,
        reason,
        f" -- {SCHEMA_HINT}" if kind is Kind.DEPLOYMENT else "",
        f" [and {repeats} more like it since its last traceback]" if repeats else "",
        exc_info=exc,
    )
