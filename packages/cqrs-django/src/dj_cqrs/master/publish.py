"""Publishing in the committing thread: committed events to the broker, right after commit.

The other sender is the per-process background publisher (`dj_cqrs.outbox.background_publisher`).
This module serves the cases where the committing thread sends itself: `send_at_commit` sends
the events of a committed transaction serialized from their instances, as django-cqrs 3.x did
(`'on_commit'` mode, a patched `produce`, a 3.x transport, SQLite without IMMEDIATE
transactions); `send_batch_now` and `send_one_by_one` send committed outbox rows; `send_now` is
the direct broker call of `'on_commit'` mode. Sent rows are marked sent (`settle_rows`), the
others are left to the relay. Nothing here imports the layers above (outbox writing, the
on-commit hand-over, model hooks).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cqrs_core.payload import TransportPayload, expires_in
from dj_cqrs import conf
from dj_cqrs.controller import producer
from dj_cqrs.observability import metrics
from dj_cqrs.outbox import committed, routing, rows
from dj_cqrs.outbox.settings import outbox_settings

if TYPE_CHECKING:
    from dj_cqrs.master.pending import Entry

logger = logging.getLogger("django-cqrs")

_LOGGED_IDS = 20


def send_now(payloads: Sequence[TransportPayload], using: str) -> bool:
    """Send `payloads` in one batch; return True if the broker accepted them.

    A failure is retried once on a fresh connection (the cached one may have gone stale), then
    logged with the events that were lost. It is never raised: the data is already committed and
    the caller (an on-commit hook in user code) cannot undo it. `cqrs_sync` repairs replicas.
    """
    if not payloads:
        return True
    filled = committed.fill(using, [(None, p) for p in payloads])
    payloads = [p for _, p in filled.ready]
    if filled.failed:
        logger.error(
            "CQRS could not serialize %d event(s) committed on database %r; they are not sent. "
            "Run `manage.py cqrs_sync` for these models once the serializer is fixed.",
            len(filled.failed),
            using,
        )
    if not payloads:
        return not filled.failed
    for attempt in (1, 2):
        try:
            metrics.timed_send(producer.send, payloads, "on_commit")
        except Exception as exc:
            if attempt == 1:
                logger.warning("CQRS publish failed (%s); retrying on a new connection", exc)
                try:
                    conf.reset_transport()
                except Exception:  # a broken transport may fail to close; we retry anyway
                    logger.debug("Closing the failed CQRS transport raised", exc_info=True)
                continue
            shown = ", ".join(
                f"{p.signal_type}:{p.cqrs_id}:{p.instance_pk}" for p in payloads[:_LOGGED_IDS]
            )
            more = f" and {len(payloads) - _LOGGED_IDS} more" if len(payloads) > _LOGGED_IDS else ""
            logger.exception(
                "CQRS could not publish %d event(s) committed on database %r: %s%s. "
                "Run `manage.py cqrs_sync` for these models to repair the replicas.",
                len(payloads),
                using,
                shown,
                more,
            )
            return False
        return not filled.failed
    return False


def send_at_commit(using: str, entries: Sequence[Entry]) -> None:
    """Send the events of a committed transaction, serialized now from their instances.

    While `producer.synchronous()` each event is one `producer.produce` call, in order;
    otherwise (`'on_commit'` mode, SQLite masters) the events go in one batch. The outbox rows
    of the events sent (or dropped by `is_sync_instance()`) are marked sent, the others stay
    for the relay.
    Never raises: failures are logged with the event.
    """
    expires = expires_in(conf.message_ttl())
    ready: list[tuple[int | None, TransportPayload]] = []
    done: list[int] = []
    left: list[tuple[int, str]] = []
    for entry in entries:
        try:
            payload = committed.at_commit(entry.payload, entry.instance, entry.fresh, using)
        except Exception as exc:
            logger.exception(
                "CQRS could not serialize %s; it is not sent now", _name(entry.payload)
            )
            if entry.outbox_id is not None:
                left.append((entry.outbox_id, f"serialization failed: {type(exc).__name__}: {exc}"))
            continue
        if payload is None:  # is_sync_instance() is False now
            if entry.outbox_id is not None:
                done.append(entry.outbox_id)
            continue
        ready.append((entry.outbox_id, dataclasses.replace(payload, expires=expires)))
    if producer.synchronous():
        for outbox_id, payload in ready:
            try:
                producer.produce(payload)
            except Exception as exc:
                logger.exception("CQRS could not publish %s after commit", _name(payload))
                if outbox_id is not None:
                    left.append((outbox_id, f"produce failed: {type(exc).__name__}: {exc}"))
                continue
            if outbox_id is not None:
                done.append(outbox_id)
    elif ready:
        _send_batch(using, ready, done, left)
    settle_rows(using, done, left)


def _send_batch(
    using: str,
    ready: list[tuple[int | None, TransportPayload]],
    done: list[int],
    left: list[tuple[int, str]],
) -> None:
    """One `produce_many` for `ready`; their rows go to `done`, or to `left` on failure."""
    stored = [outbox_id for outbox_id, _ in ready if outbox_id is not None]
    if not stored:  # 'on_commit' mode: nothing in the outbox, 3.x's retry and log
        send_now([p for _, p in ready], using)
        return
    sent, failed = send_rows(using, [(i, p) for i, p in ready if i is not None])
    done.extend(sent)
    left.extend(failed)


def settle_rows(
    using: str, done: list[int], left: list[tuple[int, str]], dropped: Sequence[int] = ()
) -> None:
    """Mark sent rows sent and note why the others are left to the relay (never raises).

    `dropped`: rows with nothing to send (`committed.Filled.dropped`), settled with a note.
    """
    if not done and not left and not dropped:
        return
    try:
        keep_days = outbox_settings().keep_days
        rows.mark_sent(using, done, keep_days)
        rows.mark_dropped(using, dropped, keep_days)
        for outbox_id, reason in left:
            rows.mark_left(using, [outbox_id], reason)
    except Exception:  # the rows stay pending: the relay sends them (duplicates at worst)
        logger.exception("CQRS could not update %d outbox row(s)", len(done) + len(left))


def _name(payload: TransportPayload) -> str:
    return f"{payload.signal_type.value} {payload.cqrs_id}:{payload.instance_pk}"


def _filled(
    using: str, fresh: Sequence[tuple[int, TransportPayload]]
) -> committed.Filled[int] | None:
    """The rows' events with their data and expiry; None (logged) if the rows could not be read.

    The rows are committed either way: what is not sent here, the relay sends.
    """
    try:
        filled = committed.fill(using, fresh)
    except Exception:
        logger.exception("CQRS could not read the rows of %d event(s) to send", len(fresh))
        return None
    expires = expires_in(conf.message_ttl())
    filled.ready = [(row_id, dataclasses.replace(p, expires=expires)) for row_id, p in filled.ready]
    return filled


def send_batch_now(using: str, fresh: Sequence[tuple[int, TransportPayload]]) -> None:
    """Send committed rows now in one batch and settle them in this thread (never raises)."""
    filled = _filled(using, fresh)
    if filled is None:
        return
    ready = filled.ready
    done, left = send_rows(using, ready)
    settle_rows(using, done, left + list(filled.failed), filled.dropped)


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
    filled = _filled(using, fresh)
    if filled is None:
        return
    done: list[int] = []
    left = list(filled.failed)
    for row_id, payload in filled.ready:
        try:
            producer.produce(payload)
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
    settle_rows(using, done, left, filled.dropped)
