"""SQLite masters: no outbox bookkeeping from a second connection.

A deferred SQLite transaction (Django's default) that has read and then writes must upgrade its
read lock to a write lock; if another connection holds the write lock then, SQLite fails the
upgrade at once with "database is locked" (waiting could deadlock, so the busy timeout does not
apply). A background publisher deleting sent rows on its own connection made 1 in 5 runs of a
3.x-style SQLite master fail so (issue 14). On SQLite, unless `transaction_mode` is IMMEDIATE
(every transaction takes the write lock first and waits for it), the committing thread therefore
sends its events and marks them sent itself, right after commit, as django-cqrs 3.x sent them:
no write happens on a connection other than the one that committed.
"""

from __future__ import annotations

from django.db import connections


def sends_in_committing_thread(using: str) -> bool:
    """True when the rows committed on `using` must be settled by the committing thread.

    Not with `fast_path` False: then every row is the relay's, as everywhere.
    """
    from dj_cqrs.outbox.settings import outbox_settings

    connection = connections[using]
    if connection.vendor != "sqlite":
        return False
    try:
        if not outbox_settings().fast_path:
            return False
    except Exception:  # noqa: BLE001  (invalid settings are reported by checks)
        return False
    mode = (connection.settings_dict.get("OPTIONS") or {}).get("transaction_mode")
    return str(mode or "").upper() != "IMMEDIATE"
