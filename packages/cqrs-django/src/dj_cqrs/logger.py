"""Logging of replica queries stopped by `CQRS['replica']['CQRS_QUERY_TIMEOUT']` (3.x API).

With `CQRS['replica']['CQRS_LOG_TIMED_OUT_QUERIES'] = True`, the SQL of a query the database
cancelled for taking too long is logged (logger `CQRS_QUERY_LOGGER`, default `django-cqrs`), so
the slow statement can be found without turning on query logging for everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import OperationalError, connections, router

from dj_cqrs import conf
from dj_cqrs.constants import (
    DB_VENDOR_MYSQL,
    DB_VENDOR_PG,
    MARIADB_TIMEOUT_ERROR_CODE,
    MYSQL_TIMEOUT_ERROR_CODE,
    PG_TIMEOUT_FLAG,
    SUPPORTED_TIMEOUT_DB_VENDORS,
)

__all__ = ["install_last_query_capturer", "log_timed_out_queries"]


class _LastQueryCapturer:
    """Execute wrapper remembering the last SQL run on its connection."""

    def __init__(self) -> None:
        self.query: str | None = None

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        try:
            return execute(sql, params, many, context)
        finally:
            self.query = sql


def connection_for(model_cls: Any) -> Any:
    """The connection replica writes of `model_cls` go through."""
    if getattr(model_cls, "_meta", None) is None:  # RawReplicaMixin: no table
        return connections["default"]
    return connections[router.db_for_write(model_cls)]


def _capturer(connection: Any) -> _LastQueryCapturer | None:
    return next((w for w in connection.execute_wrappers if isinstance(w, _LastQueryCapturer)), None)


def install_last_query_capturer(model_cls: Any) -> None:
    """Remember the last query run on `model_cls`'s database connection (once per connection)."""
    install_capturer_on(connection_for(model_cls))


def install_capturer_on(connection: Any) -> None:
    """`install_last_query_capturer` for a connection."""
    if _capturer(connection) is None:
        connection.execute_wrappers.append(_LastQueryCapturer())


def log_timed_out_queries(error: BaseException | None, model_cls: Any) -> None:
    """Log the last query of `model_cls`'s connection if `error` is a query timeout.

    Only with `CQRS_LOG_TIMED_OUT_QUERIES` set, on PostgreSQL and MySQL, and after
    `install_last_query_capturer` (`apply_query_timeouts` installs it).
    """
    replica = conf.replica_settings()
    if not replica.get("CQRS_LOG_TIMED_OUT_QUERIES", False):
        return
    if not isinstance(error, OperationalError) or not error.args:
        return
    connection = connection_for(model_cls)
    vendor = getattr(connection, "vendor", "")
    if vendor not in SUPPORTED_TIMEOUT_DB_VENDORS:
        return
    first = error.args[0]
    mysql_codes = (MYSQL_TIMEOUT_ERROR_CODE, MARIADB_TIMEOUT_ERROR_CODE)
    timed_out = (vendor == DB_VENDOR_MYSQL and first in mysql_codes) or (
        vendor == DB_VENDOR_PG and PG_TIMEOUT_FLAG in str(first)
    )
    capturer = _capturer(connection)
    if timed_out and capturer is not None and capturer.query:
        name = replica.get("CQRS_QUERY_LOGGER") or "django-cqrs"
        logging.getLogger(name).error("Timed out query:\n%s", capturer.query)
