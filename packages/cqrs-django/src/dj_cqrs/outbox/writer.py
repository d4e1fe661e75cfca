"""Outbox writing: INSERT queued events in the transaction that produced them.

`stage` is called by the transaction's group (`dj_cqrs.master.pending`) as events are queued;
`publish` is for events outside a model save (the `cqrs_sync` command): stored, then handed to
the publishers (`dj_cqrs.master.publish`, `dj_cqrs.outbox.background_publisher`) after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from django.db import transaction

from cqrs_core.payload import TransportPayload
from dj_cqrs.controller import producer
from dj_cqrs.master.publish import send_batch_now, send_now, send_one_by_one
from dj_cqrs.observability import metrics
from dj_cqrs.outbox import rows
from dj_cqrs.outbox.background_publisher import publish_fresh
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.settings import outbox_settings
from dj_cqrs.outbox.sqlite import sends_in_committing_thread

if TYPE_CHECKING:
    from dj_cqrs.master.pending import Entry, Group

logger = logging.getLogger("django-cqrs")


def stage(using: str, group: Group, events: Sequence[tuple[Hashable, Entry]]) -> None:
    """Add `events` to `group` and INSERT their rows (one statement for all of them).

    An event that replaces one already written at this savepoint level (the instance was saved
    again) deletes the older row, so a transaction leaves one row per instance, like one message.
    """
    if len(events) == 1:  # a single save: the common case, without the bookkeeping below
        ((key, entry),) = events
        old = group.add(key, entry)
        if old is not None and old.outbox_id is not None:
            OutboxEvent.objects.using(using).filter(id=old.outbox_id)._raw_delete(using)
        entry = group.entries[key]
        (entry.outbox_id,) = rows.write(using, [entry.payload])
        metrics.written([entry.payload])
        return
    written: dict[Hashable, Entry] = {}
    stale: list[int] = []
    for key, entry in events:
        old = group.add(key, entry)
        if old is not None and old.outbox_id is not None:
            stale.append(old.outbox_id)
        written[key] = group.entries[key]  # the same key twice in one call: keep the last
    if stale:
        OutboxEvent.objects.using(using).filter(id__in=stale)._raw_delete(using)
    todo = list(written.values())
    ids = rows.write(using, [e.payload for e in todo])
    metrics.written([e.payload for e in todo])
    for entry, row_id in zip(todo, ids, strict=True):
        entry.outbox_id = row_id


def publish(payloads: Sequence[TransportPayload], using: str) -> bool:
    """Hand `payloads` over for sending; True if they are in the outbox or the broker has them.

    Never raises: a failure is logged (with the events concerned) and False is returned.
    """
    if not payloads:
        return True
    try:
        enabled = outbox_settings().enabled
    except Exception:
        logger.exception("CQRS settings are invalid (see `manage.py check`); sending directly")
        enabled = False
    if enabled:
        return write_and_publish(using, payloads)
    return send_now(payloads, using)


def write_and_publish(using: str, payloads: Sequence[TransportPayload]) -> bool:
    """Store `payloads` in the outbox on `using`, then queue them for sending after commit.

    Returns:
        True once they are stored (the relay sends them if the fast path cannot), False if
        the database refused them (logged).
    """
    try:
        ids = rows.write(using, payloads)
    except Exception:
        logger.exception(
            "CQRS could not write %d event(s) to the outbox on database %r", len(payloads), using
        )
        return False
    metrics.written(payloads)
    fresh = list(zip(ids, payloads, strict=True))
    transaction.on_commit(lambda: _after_commit(using, fresh), using=using)
    return True


def _after_commit(using: str, fresh: list[tuple[int, TransportPayload]]) -> None:
    if producer.synchronous():
        send_one_by_one(using, fresh)
    elif sends_in_committing_thread(using):
        send_batch_now(using, fresh)
    else:
        publish_fresh(using, fresh)
