"""Helpers of django-cqrs 3.x (`dj_cqrs.utils`), over our settings and replica code."""

from __future__ import annotations

from collections import defaultdict
from contextlib import ContextDecorator
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from dj_cqrs import conf
from dj_cqrs.constants import (
    DB_VENDOR_PG,
    DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE,
    SUPPORTED_TIMEOUT_DB_VENDORS,
)
from dj_cqrs.state import cqrs_state

__all__ = [
    "apply_query_timeouts",
    "bulk_relate_cqrs_serialization",
    "get_delay_queue_max_size",
    "get_json_valid_value",
    "get_message_expiration_dt",
    "get_messages_prefetch_count_per_worker",
    "set_query_timeout",
]


def get_message_expiration_dt(message_ttl: float | None = None) -> datetime | None:
    """When a message sent now expires: `message_ttl` seconds (falsy: `CQRS_MESSAGE_TTL`) from
    now, or None when the TTL is None (never)."""
    ttl = message_ttl or conf.message_ttl()
    if ttl is None:
        return None
    return timezone.now() + timedelta(seconds=ttl)


def get_delay_queue_max_size() -> int | None:
    """`CQRS['replica']['delay_queue_max_size']` (1000 by default); None without a replica section."""
    if "replica" not in conf.cqrs_settings():
        return None
    size: int | None = conf.replica_settings().get(
        "delay_queue_max_size", DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE
    )
    return size


def get_messages_prefetch_count_per_worker() -> int:
    """Unacknowledged messages one worker may hold: delay queue size + 1, or 0 (no limit)."""
    size = get_delay_queue_max_size()
    return 0 if size is None else size + 1


def get_json_valid_value(value: Any) -> Any:
    """`value` as JSON can carry it: dates, datetimes and UUIDs become strings."""
    from dj_cqrs.master.serialization import wire_value

    return wire_value(value)


def set_query_timeout(connection: Any, *, local: bool) -> bool:
    """Apply `CQRS['replica']['CQRS_QUERY_TIMEOUT']` (ms) to `connection`.

    PostgreSQL gets `statement_timeout` (`local`: for the current transaction only); MySQL
    the session's `MAX_EXECUTION_TIME` and MariaDB its `max_statement_time` (the consumer puts
    them back after its transaction: `dj_cqrs.replica.session`). Other databases, and a
    timeout of 0, are left alone.

    Returns:
        True when a timeout was set.
    """
    timeout = int(conf.replica_settings().get("CQRS_QUERY_TIMEOUT") or 0)
    vendor = getattr(connection, "vendor", "")
    if timeout <= 0 or vendor not in SUPPORTED_TIMEOUT_DB_VENDORS:
        return False
    if vendor == DB_VENDOR_PG:
        statement = f"SET {'LOCAL ' if local else ''}statement_timeout = {timeout}"
    elif getattr(connection, "mysql_is_mariadb", False):  # seconds, and for every statement
        statement = f"SET SESSION max_statement_time = {timeout / 1000:.3f}"
    else:  # MySQL: read-only SELECTs only
        statement = f"SET SESSION MAX_EXECUTION_TIME={timeout}"
    with connection.cursor() as cursor:
        cursor.execute(statement)
    return True


def apply_query_timeouts(model_cls: Any) -> None:
    """Apply `CQRS_QUERY_TIMEOUT` to the connection `model_cls` is written through.

    Also remembers that connection's last query, for `dj_cqrs.logger.log_timed_out_queries`.
    """
    from dj_cqrs.logger import connection_for, install_last_query_capturer

    if set_query_timeout(connection_for(model_cls), local=False):
        install_last_query_capturer(model_cls)


class _BulkRelateCM(ContextDecorator):
    """Collects the master instances saved in the block, to serialize them with one query."""

    def __init__(self, cqrs_id: str | None = None) -> None:
        self._cqrs_id = cqrs_id
        self._mapping: defaultdict[str, defaultdict[str | None, set[Any]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self._cache: dict[str, dict[str | None, dict[Any, Any]]] = {}

    def _tracks(self, instance: Any) -> str | None:
        cqrs_id: str | None = getattr(instance, "CQRS_ID", None)
        if not cqrs_id or (self._cqrs_id and cqrs_id != self._cqrs_id):
            return None
        return cqrs_id

    def register(self, instance: Any, using: str | None = None) -> None:
        """Remember that `instance` (saved on `using`) will be serialized."""
        cqrs_id = self._tracks(instance)
        if cqrs_id is not None:
            self._mapping[cqrs_id][using].add(instance.pk)

    def get_cached_instance(self, instance: Any, using: str | None = None) -> Any:
        """`instance` as loaded through `relate_cqrs_serialization`, with every registered
        instance of its model and database in one query; None if it was not registered."""
        cqrs_id = self._tracks(instance)
        if cqrs_id is None:
            return None
        cached = self._cache.get(cqrs_id, {}).get(using)
        if cached:
            return cached.get(instance.pk)
        pks = self._mapping[cqrs_id][using]
        if not pks:
            return None
        model = type(instance)
        queryset = model.relate_cqrs_serialization(model._default_manager.using(using))
        loaded = {obj.pk: obj for obj in queryset.filter(pk__in=pks).order_by()}
        self._cache.setdefault(cqrs_id, {})[using] = loaded
        return loaded.get(instance.pk)

    def __enter__(self) -> _BulkRelateCM:
        cqrs_state.bulk_relate_cm = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        cqrs_state.bulk_relate_cm = None


def bulk_relate_cqrs_serialization(cqrs_id: str | None = None) -> _BulkRelateCM:
    """Context manager (or decorator) serializing the master instances saved inside it in bulk.

    Args:
        cqrs_id: Only this model; None for every master model.
    """
    return _BulkRelateCM(cqrs_id=cqrs_id)
