"""Events ↔ outbox rows: what is stored is exactly what will be sent (but `expires`)."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from collections.abc import Sequence
from typing import Any

from django.db import OperationalError, connections
from django.db.models import F, Q
from django.utils import timezone

from cqrs_core import codec
from cqrs_core.payload import TransportPayload, expires_in
from dj_cqrs import conf
from dj_cqrs.controller import producer
from dj_cqrs.observability import tracing
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.settings import outbox_settings

logger = logging.getLogger("django-cqrs")


def row_for(payload: TransportPayload, now: datetime.datetime) -> OutboxEvent:
    """An unsaved row holding `payload` serialized to its wire JSON."""
    return OutboxEvent(
        cqrs_id=payload.cqrs_id,
        instance_pk=str(payload.instance_pk),
        signal_type=payload.signal_type.value,
        queue=payload.queue,
        body=body_of(payload),
        created_at=now,
        trace_context=tracing.stored(payload),  # tracing (issue 16)
    )


def payload_of(row: OutboxEvent, *, expires: datetime.datetime | None) -> TransportPayload:
    """The event stored in `row`, expiring at `expires`."""
    payload = codec.decode(row.body, queue=row.queue or None, default_ttl=None)
    payload = dataclasses.replace(payload, expires=expires)
    return tracing.restored(payload, row.trace_context)  # tracing (issue 16)


def payloads_of(rows: Sequence[OutboxEvent]) -> list[TransportPayload]:
    """The events of `rows`, with `expires` counted from now (the message TTL)."""
    expires = expires_in(conf.message_ttl())
    return [payload_of(row, expires=expires) for row in rows]


def write(using: str, payloads: Sequence[TransportPayload]) -> list[int]:
    """INSERT one row per payload in the current transaction (one statement); their ids.

    The rows are claimed for this process (`claim`) when it sends them after commit itself.
    """
    if not payloads:
        return []
    tracing.stamp(payloads)  # tracing (issue 16): `create` spans, their context in the headers
    connection = connections[using]
    now = timezone.now()
    by, until = claim(now)
    if not connection.features.can_return_rows_from_bulk_insert:
        objs = [row_for(payload, now) for payload in payloads]
        for obj in objs:
            obj.claimed_by, obj.claimed_until = by, until
        OutboxEvent.objects.using(using).bulk_create(objs)
        return [obj.id for obj in objs]
    return _insert_returning(connection, payloads, now, by, until)


def claim(now: datetime.datetime) -> tuple[str, datetime.datetime | None]:
    """(claimed_by, claimed_until) of a row written now.

    When this process sends its rows after commit (the fast path, or one by one through
    `produce`), the row is its own until `lease` seconds from now: the relay does not send it
    meanwhile, even if publishing a burst takes longer than `grace` (issue 14: bursts went out
    nearly twice). A crashed process's claim runs out and the relay sends the row then. The
    publisher never sends a row whose claim is about to end (`claim_margin`).
    """
    try:
        settings = outbox_settings()
    except Exception:  # noqa: BLE001  (invalid settings are reported by checks)
        return "", None
    if not (settings.fast_path or producer.synchronous()) or settings.lease <= 0:
        return "", None
    return PUBLISHER_CLAIM, now + datetime.timedelta(seconds=settings.lease)


PUBLISHER_CLAIM = "publisher"
"""`claimed_by` of a row the committing process sends itself."""


def claim_margin(lease: float) -> float:
    """Seconds of claim a publisher wants left before it sends a row (else the relay's)."""
    return min(10.0, lease / 2)


COLUMNS = (
    "cqrs_id",
    "instance_pk",
    "signal_type",
    "queue",
    "body",
    "created_at",
    "attempts",
    "last_error",
    "claimed_by",
    "claimed_until",
    "trace_context",
)
"""Columns of an outbox INSERT, in the order of its values."""
_sql_cache: dict[tuple[str, int], str] = {}


def _insert_sql(connection: Any, count: int) -> str:
    key = (connection.vendor, count)
    sql = _sql_cache.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(c) for c in COLUMNS)
        one = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
        sql = (
            f"INSERT INTO {quote(OutboxEvent._meta.db_table)} ({columns}) VALUES "
            f"{', '.join([one] * count)} RETURNING {quote('id')}"
        )
        if count <= 64:
            _sql_cache[key] = sql
    return sql


def body_of(payload: TransportPayload) -> str:
    """The stored body: the wire JSON without `expires` (set again when sent)."""
    body = payload.to_dict()
    body["expires"] = None
    return codec.dumps(body)


def _insert_returning(
    connection: Any,
    payloads: Sequence[TransportPayload],
    when: datetime.datetime,
    by: str,
    until: datetime.datetime | None,
) -> list[int]:
    """The INSERT of `bulk_create` without its per-object overhead (PostgreSQL, SQLite 3.35+,
    MariaDB 10.5+): the rows are known to be plain text and two timestamps."""
    now = connection.ops.adapt_datetimefield_value(when)
    claimed_until = None if until is None else connection.ops.adapt_datetimefield_value(until)
    ids: list[int] = []
    for start in range(0, len(payloads), _INSERT_CHUNK):
        chunk = payloads[start : start + _INSERT_CHUNK]
        params: list[Any] = []
        for payload in chunk:
            params += (
                payload.cqrs_id,
                str(payload.instance_pk),
                payload.signal_type.value,
                payload.queue,
                body_of(payload),
                now,
                0,
                "",
                by,
                claimed_until,
                tracing.stored(payload),  # tracing (issue 16)
            )
        with connection.cursor() as cursor:
            cursor.execute(_insert_sql(connection, len(chunk)), params)
            # RETURNING order is not promised; ids grow in VALUES order within one statement.
            ids += sorted(row[0] for row in cursor.fetchall())
    return ids


_INSERT_CHUNK = 100
"""Rows per INSERT statement (11 parameters each: within every backend's parameter limit)."""


def mark_sent(using: str, ids: Sequence[int], keep_days: float, *, note: str = "") -> int:
    """Sent rows are deleted (keep_days 0) or stamped with `sent_at`; returns the row count.

    `note`: also written to `last_error` of the stamped rows, in the same statement.
    """
    if not ids:
        return 0
    if connections[using].vendor == "mysql":
        return _mark_sent_mysql(connections[using], sorted(ids), keep_days, note)
    rows = OutboxEvent.objects.using(using).filter(id__in=ids)
    if keep_days <= 0:
        return rows._raw_delete(using)  # no cascades, no signals: one DELETE
    noted = {"last_error": note} if note else {}
    return rows.update(sent_at=timezone.now(), claimed_by="", claimed_until=None, **noted)


DROPPED_NOTE = (
    "not sent: the row was gone when its event was serialized (its DELETE is sent instead) "
    "or is_sync_instance() had become False"
)
"""`last_error` of a row settled without a message (kept rows only: `keep_days` > 0)."""


def mark_dropped(using: str, ids: Sequence[int], keep_days: float) -> None:
    """Settle rows that have nothing left to send, saying so on the rows that are kept.

    A deferred SAVE is serialized from the committed row when it is sent; if a DELETE of the
    row committed in between, there is no data and the DELETE carries the news. Without the
    note, an operator counting kept rows would count a message that never existed.
    """
    mark_sent(using, ids, keep_days, note=DROPPED_NOTE)


_MYSQL_RETRIED = frozenset({1205, 1213})
"""Lock wait timeout and deadlock: the statement (1213: the transaction) was rolled back."""
_MYSQL_ATTEMPTS = 5


def _mark_sent_mysql(connection: Any, ids: list[int], keep_days: float, note: str) -> int:
    """`mark_sent` on MySQL/MariaDB: one primary-key lookup per row, in id order, retried.

    MySQL has no partial indexes, so the pending index is a plain index on `id`, which the
    optimizer prefers to the primary key: a lookup in a non-unique index, or a range scan of
    `id IN (...)`, also locks the entry after the last match, which belongs to the batch of
    another relay; two relays then wait for each other (deadlock, error 1213). A primary-key
    equality locks its row only. The events are already published: failing here would put
    them back as pending and send them again, so the statements are retried (a deadlock rolls
    back the whole transaction; the retry runs in the next one).
    """
    quote = connection.ops.quote_name
    table = quote(OutboxEvent._meta.db_table)
    if keep_days <= 0:  # the multi-table form: the only DELETE that takes an index hint
        sql = f"DELETE o FROM {table} AS o FORCE INDEX (PRIMARY) WHERE o.{quote('id')} = %s"
        params: list[list[Any]] = [[row_id] for row_id in ids]
    else:
        noted = f", {quote('last_error')} = %s" if note else ""
        sql = (
            f"UPDATE {table} FORCE INDEX (PRIMARY) SET {quote('sent_at')} = %s, "
            f"{quote('claimed_by')} = '', {quote('claimed_until')} = NULL{noted} "
            f"WHERE {quote('id')} = %s"
        )
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        params = [[now, *([note] if note else []), row_id] for row_id in ids]
    attempt = 1
    while True:
        try:
            with connection.cursor() as cursor:
                cursor.executemany(sql, params)
                return int(cursor.rowcount)
        except OperationalError as exc:
            if exc.args[0] not in _MYSQL_RETRIED or attempt == _MYSQL_ATTEMPTS:
                raise
            logger.warning(
                "CQRS outbox: marking %d sent row(s) failed (%s); retry %d of %d",
                len(ids),
                exc,
                attempt,
                _MYSQL_ATTEMPTS - 1,
            )
            time.sleep(0.05 * attempt)
            attempt += 1


def still_claimed(using: str, ids: Sequence[int], margin: float) -> set[int]:
    """Those of `ids` this process may still send: unsent, not set aside, and claimed by a
    publisher for at least `margin` more seconds (or never claimed: claims are off).

    A row whose claim ran out belongs to the relay: sending it too would send it twice.
    """
    if not ids:
        return set()
    soon = timezone.now() + datetime.timedelta(seconds=margin)
    mine = Q(claimed_by=PUBLISHER_CLAIM, claimed_until__gt=soon) | Q(
        claimed_by="", claimed_until__isnull=True
    )
    return set(
        OutboxEvent.objects.using(using)
        .filter(mine, id__in=list(ids), sent_at__isnull=True, set_aside_at__isnull=True)
        .values_list("id", flat=True)
    )


def mark_left(using: str, ids: Sequence[int], reason: str, *, release: bool = True) -> None:
    """Note why rows were left to the relay (which takes such rows without waiting `grace`).

    `release`: end the claim too, so that a relay takes them at once.
    """
    changes: dict[str, Any] = {"attempts": F("attempts") + 1, "last_error": reason[:2000]}
    if release:
        changes.update(claimed_by="", claimed_until=None)
    OutboxEvent.objects.using(using).filter(id__in=ids, sent_at__isnull=True).update(**changes)


def set_aside(using: str, ids: Sequence[int], reason: str) -> int:
    """Rows the broker refused: kept with the reason, sent only after `cqrs_outbox retry`."""
    return (
        OutboxEvent.objects.using(using)
        .filter(id__in=ids, sent_at__isnull=True)
        .update(
            attempts=F("attempts") + 1,
            last_error=reason[:2000],
            set_aside_at=timezone.now(),
            claimed_by="",
            claimed_until=None,
        )
    )


_MAX_KEYS = 500


def earlier_pending(
    using: str, keys: set[tuple[str, str]], *, before: int, exclude: Sequence[int] = ()
) -> dict[tuple[str, str], int]:
    """For each (cqrs_id, instance_pk) in `keys`, the first unsent row with an id below
    `before` that is not in `exclude` (key → id): an event must not overtake such a row.

    With many keys only the cqrs_ids are filtered in SQL (a shorter query, same answer).
    """
    if not keys:
        return {}
    found = OutboxEvent.objects.using(using).filter(
        sent_at__isnull=True,
        set_aside_at__isnull=True,  # a refused row holds back nothing
        id__lt=before,
        cqrs_id__in={k[0] for k in keys},
    )
    if len(keys) <= _MAX_KEYS:
        found = found.filter(instance_pk__in={k[1] for k in keys})
    if exclude:
        found = found.exclude(id__in=list(exclude))
    first: dict[tuple[str, str], int] = {}
    for cqrs_id, instance_pk, row_id in found.order_by("id").values_list(
        "cqrs_id", "instance_pk", "id"
    ):
        key = (cqrs_id, instance_pk)
        if key in keys and key not in first:
            first[key] = row_id
    return first
