"""What the consumer sets on a MySQL/MariaDB session around each transaction it applies.

Isolation: at REPEATABLE READ (the server's default, used when `isolation_level` is set to
None or "repeatable read" in DATABASES OPTIONS), `SELECT ... FOR UPDATE` of a row that does
not exist yet locks the gap where it would be, and two workers inserting new keys into the same
gap deadlock. The consumer needs nothing more than READ COMMITTED (row locks decide the order
of events), which is also Django's default for MySQL: its transactions run at READ COMMITTED
whatever the connection's level, and the connection keeps its level for everything else.

`CQRS_QUERY_TIMEOUT`: MySQL has no transaction-local setting, so the session timeout that
`dj_cqrs.utils.set_query_timeout` sets for a transaction is put back to the server default
after it, and other code on the same connection is not limited by it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from django.db import DatabaseError, connections

if TYPE_CHECKING:
    from django.db.backends.mysql.base import DatabaseWrapper as MySQLDatabaseWrapper

logger = logging.getLogger("django-cqrs")

_WEAK_ENOUGH = ("read committed", "read uncommitted")


@contextlib.contextmanager
def consumer_session(alias: str) -> Iterator[None]:
    """Wrap one transaction of the consumer on `alias` (enter it before `atomic`)."""
    connection = connections[alias]
    if connection.vendor != "mysql":
        yield
        return
    if not connection.in_atomic_block:  # the transaction about to start is ours
        connection.ensure_connection()
        if getattr(connection, "isolation_level", None) not in _WEAK_ENOUGH:
            with connection.cursor() as cursor:  # for the next transaction only
                cursor.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
    try:
        yield
    finally:
        _reset_query_timeout(alias)


def _reset_query_timeout(alias: str) -> None:
    from dj_cqrs.conf import replica_settings

    connection = cast("MySQLDatabaseWrapper", connections[alias])  # only called on MySQL/MariaDB
    if not int(replica_settings().get("CQRS_QUERY_TIMEOUT") or 0):
        return
    variable = "max_statement_time" if connection.mysql_is_mariadb else "MAX_EXECUTION_TIME"
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET SESSION {variable} = DEFAULT")
    except DatabaseError:  # a broken connection: it is replaced before the next batch
        logger.debug("CQRS could not reset %s on %s", variable, alias, exc_info=True)
