"""System checks of the outbox settings (`cqrs.E1xx`, `cqrs.W1xx`)."""

from __future__ import annotations

from typing import Any

import django
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import connections

from dj_cqrs import conf
from dj_cqrs.outbox.settings import problems


@register("cqrs")
def check_outbox_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Invalid `publish` mode or `outbox` options; SQLite set up to fail under concurrent writes."""
    try:
        master = conf.master_settings()
    except Exception:  # reported by the main CQRS checks  # noqa: BLE001  (reported by the main checks)
        return []
    found: list[CheckMessage] = [
        Error(message, hint=hint or None, id="cqrs.E101") for message, hint in problems(master)
    ]
    if found:
        return found
    if master.get("publish", "outbox") == "outbox":
        found.extend(_sqlite_warnings())
    return found


def _sqlite_warnings() -> list[CheckMessage]:
    """SQLite files written by the request and by a relay at the same time.

    With Django's default deferred transactions, a transaction that read first and then
    writes fails at once with "database is locked" when another connection is writing;
    IMMEDIATE transactions wait for the lock instead. The outbox publisher does not write from
    a second connection there (`dj_cqrs.outbox.sqlite`); a relay process still does.
    """
    if django.VERSION < (5, 1):
        return []
    found: list[CheckMessage] = []
    for alias in connections:
        settings_dict = connections.settings[alias]
        if not settings_dict.get("ENGINE", "").endswith("sqlite3"):
            continue
        mode = (settings_dict.get("OPTIONS") or {}).get("transaction_mode")
        if str(mode).upper() != "IMMEDIATE":
            found.append(
                Warning(
                    f"Database {alias!r} is SQLite with {mode or 'DEFERRED'} transactions, so "
                    "the committing thread sends its events itself, right after commit (as "
                    "django-cqrs 3.x did); a save may still fail with 'database is locked' "
                    "while `cqrs_relay` writes to it (only when it has events left to send).",
                    hint=f"Set DATABASES[{alias!r}]['OPTIONS']['transaction_mode'] = 'IMMEDIATE'.",
                    id="cqrs.W101",
                )
            )
    return found
