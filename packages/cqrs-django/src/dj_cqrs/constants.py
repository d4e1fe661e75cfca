"""Constants of django-cqrs 3.x, by their old names (`SignalType` lives in cqrs-core).

Values are those of 3.x; the defaults are the ones our settings code uses.
"""

from __future__ import annotations

from cqrs_core.constants import (
    DEFAULT_DEAD_MESSAGE_TTL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MESSAGE_TTL,
    DEFAULT_RETRY_DELAY,
    SignalType,
)

__all__ = [
    "ALL_BASIC_FIELDS",
    "DB_VENDOR_MYSQL",
    "DB_VENDOR_PG",
    "DEFAULT_DEAD_MESSAGE_TTL",
    "DEFAULT_MASTER_AUTO_UPDATE_FIELDS",
    "DEFAULT_MASTER_MESSAGE_TTL",
    "DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE",
    "DEFAULT_REPLICA_MAX_RETRIES",
    "DEFAULT_REPLICA_RETRY_DELAY",
    "FIELDS_TRACKER_FIELD_NAME",
    "MARIADB_TIMEOUT_ERROR_CODE",
    "MYSQL_TIMEOUT_ERROR_CODE",
    "NO_QUEUE",
    "PG_TIMEOUT_FLAG",
    "SUPPORTED_TIMEOUT_DB_VENDORS",
    "TRACKED_FIELDS_ATTR_NAME",
    "SignalType",
]

ALL_BASIC_FIELDS = "__all__"
"""`CQRS_FIELDS` / `CQRS_TRACKED_FIELDS` value meaning every concrete field."""

FIELDS_TRACKER_FIELD_NAME = "__fields_tracker"
"""Attribute of a master instance holding its tracked-fields tracker."""
TRACKED_FIELDS_ATTR_NAME = "__tracked_fields"
"""Instance attribute holding the `previous_data` recorded by the last save (3.x name)."""

NO_QUEUE = "None"
"""`cqrs_sync` queue value meaning "every replica" (the string, as 3.x parses it)."""

DEFAULT_MASTER_AUTO_UPDATE_FIELDS = False
DEFAULT_MASTER_MESSAGE_TTL = DEFAULT_MESSAGE_TTL
DEFAULT_REPLICA_MAX_RETRIES = DEFAULT_MAX_RETRIES
DEFAULT_REPLICA_RETRY_DELAY = DEFAULT_RETRY_DELAY
DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE = 1000

DB_VENDOR_PG = "postgresql"
DB_VENDOR_MYSQL = "mysql"
SUPPORTED_TIMEOUT_DB_VENDORS = frozenset({DB_VENDOR_MYSQL, DB_VENDOR_PG})
"""Databases where `CQRS['replica']['CQRS_QUERY_TIMEOUT']` is applied."""

PG_TIMEOUT_FLAG = "statement timeout"
"""Text of PostgreSQL's error when `statement_timeout` cancels a query."""
MYSQL_TIMEOUT_ERROR_CODE = 3024
"""MySQL error code of a query stopped by MAX_EXECUTION_TIME."""
MARIADB_TIMEOUT_ERROR_CODE = 1969
"""MariaDB error code of a query stopped by max_statement_time (MariaDB has no 3024)."""
