"""Write queued events to the outbox in the transaction that produced them."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from django.db import transaction

from cqrs_core.payload import TransportPayload, expires_in
from dj_cqrs import conf
from dj_cqrs.controller import producer
from dj_cqrs.observability import metrics
from dj_cqrs.outbox import committed, routing, rows
from dj_cqrs.outbox.fast_path import publish_fresh
from dj_cqrs.outbox.models import OutboxEvent
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


def send_batch_now(using: str, fresh: Sequence[tuple[int, TransportPayload]]) -> None:
    """Send committed rows now in one batch and settle them in this thread (never raises)."""
    from dj_cqrs.master.publish import settle_rows

    try:
        filled = committed.fill(using, fresh)
    except Exception:  # the rows are committed: the relay sends them
        logger.exception("CQRS could not read the rows of %d event(s) to send", len(fresh))
        return
    expires = expires_in(conf.message_ttl())
    ready = [(row_id, dataclasses.replace(p, expires=expires)) for row_id, p in filled.ready]
    done, left = send_rows(using, ready)
    settle_rows(using, done + list(filled.dropped), left + list(filled.failed))


def send_rows(
    using: str, ready: Sequence[tuple[int, TransportPayload]]
) -> tuple[list[int], list[tuple[int, str]]]:
    """Send committed rows in this thread: (ids sent, (id, reason) left to the relay).

    Rows the broker refuses are set aside (`dj_cqrs.outbox.routing`).
    """
    if not ready:
        return [], []
    outcome = routing.send_checked([p for _, p in ready], metrics.timed(producer.send, "commit"))
    metrics.set_aside("refused", len(outcome.refused))
    left: list[tuple[int, str]] = []
    for index, reason in outcome.refused.items():
        if not routing.set_aside_when_refused(ready[index][1]):
            left.append((ready[index][0], reason))
            continue
        logger.error("CQRS outbox row %s was set aside: %s", ready[index][0], reason)
        try:
            rows.set_aside(using, [ready[index][0]], reason)
        except Exception:
            logger.exception("CQRS could not set aside outbox row %s", ready[index][0])
    done = [ready[i][0] for i in outcome.sent]
    if outcome.error is not None:
        exc = outcome.error
        settled = set(outcome.sent) | set(outcome.refused)
        left += [
            (row_id, f"publish failed: {type(exc).__name__}: {exc}")
            for i, (row_id, _) in enumerate(ready)
            if i not in settled
        ]
        logger.error(
            "CQRS could not publish %d event(s) (%s: %s); `manage.py cqrs_relay` sends them",
            len(left),
            type(exc).__name__,
            exc,
        )
    return done, left


def send_one_by_one(using: str, fresh: Sequence[tuple[int, TransportPayload]]) -> None:
    """Send committed rows now through `producer.produce`, one call per event (never raises)."""
    from dj_cqrs.master.publish import settle_rows

    try:
        filled = committed.fill(using, fresh)
    except Exception:  # the rows are committed: the relay sends them
        logger.exception("CQRS could not read the rows of %d event(s) to send", len(fresh))
        return
    expires = expires_in(conf.message_ttl())
    done = list(filled.dropped)
    left = list(filled.failed)
    for row_id, payload in filled.ready:
        try:
            producer.produce(dataclasses.replace(payload, expires=expires))
        except Exception as exc:
            logger.exception(
                "CQRS could not publish %s %s:%s; the relay sends it",
                payload.signal_type.value,
                payload.cqrs_id,
                payload.instance_pk,
            )
            left.append((row_id, f"produce failed: {type(exc).__name__}: {exc}"))
        else:
            done.append(row_id)
    settle_rows(using, done, left)
