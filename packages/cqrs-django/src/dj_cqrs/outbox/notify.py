"""PostgreSQL LISTEN/NOTIFY: wake relays when rows are left to them (polling is the fallback)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections

logger = logging.getLogger("django-cqrs")

CHANNEL = "dj_cqrs_outbox"


def supported(using: str) -> bool:
    return connections[using].vendor == "postgresql"


def notify(using: str) -> None:
    """Send a NOTIFY on `using` (delivered when its transaction commits); never raises."""
    if not supported(using):
        return
    try:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
    except Exception:  # a wake-up call is best effort: relays poll anyway
        logger.debug("CQRS outbox NOTIFY failed", exc_info=True)


class Listener:
    """A dedicated connection LISTENing on the channel; `wait(t)` returns early on a NOTIFY."""

    def __init__(self, using: str) -> None:
        self.using = using
        self._conn: Any = None

    def _open(self) -> Any:
        wrapper = connections[self.using]
        conn = wrapper.get_new_connection(wrapper.get_connection_params())
        conn.autocommit = True
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True if a notification arrived.

        Raises:
            Exception: the connection failed (the caller falls back to sleeping).
        """
        if self._conn is None:
            self._conn = self._open()
        got = False
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            got = True
        if got:  # drain what else is queued, without blocking
            for _ in self._conn.notifies(timeout=0):
                pass
        return got

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("Closing the CQRS LISTEN connection failed", exc_info=True)
