"""The one place where events are handed to the broker.

`publish(payloads, using)` is called by code that has events outside a model save (the
`cqrs_sync` command). With the outbox (the default) it writes the events to the outbox on
`using` and sends them after commit; `send_now` is the direct broker call. `send_at_commit`
sends the events of a committed transaction from the committing thread, serialized from their
instances as django-cqrs 3.x did (`'on_commit'` mode, a patched `produce`, a 3.x transport).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cqrs_core.payload import TransportPayload, expires_in
from dj_cqrs import conf
from dj_cqrs.controller import producer
from dj_cqrs.master.events import at_commit
from dj_cqrs.observability import metrics

if TYPE_CHECKING:
    from dj_cqrs.master.pending import Entry

logger = logging.getLogger("django-cqrs")

_LOGGED_IDS = 20


def publish(payloads: Sequence[TransportPayload], using: str) -> bool:
    """Hand `payloads` over for sending; True if they are in the outbox or the broker has them.

    Never raises: a failure is logged (with the events concerned) and False is returned.
    """
    if not payloads:
        return True
    try:
        from dj_cqrs.outbox.settings import outbox_settings

        enabled = outbox_settings().enabled
    except Exception:
        logger.exception("CQRS settings are invalid (see `manage.py check`); sending directly")
        enabled = False
    if enabled:
        from dj_cqrs.outbox.writer import write_and_publish

        return write_and_publish(using, payloads)
    return send_now(payloads, using)


def send_now(payloads: Sequence[TransportPayload], using: str) -> bool:
    """Send `payloads` in one batch; return True if the broker accepted them.

    A failure is retried once on a fresh connection (the cached one may have gone stale), then
    logged with the events that were lost. It is never raised: the data is already committed and
    the caller (an on-commit hook in user code) cannot undo it. `cqrs_sync` repairs replicas.
    """
    if not payloads:
        return True
    from dj_cqrs.outbox.committed import fill

    filled = fill(using, [(None, p) for p in payloads])
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
            payload = at_commit(entry, using)
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
    from dj_cqrs.outbox.writer import send_rows

    sent, failed = send_rows(using, [(i, p) for i, p in ready if i is not None])
    done.extend(sent)
    left.extend(failed)


def settle_rows(using: str, done: list[int], left: list[tuple[int, str]]) -> None:
    """Mark sent rows sent and note why the others are left to the relay (never raises)."""
    if not done and not left:
        return
    from dj_cqrs.outbox import rows
    from dj_cqrs.outbox.settings import outbox_settings

    try:
        rows.mark_sent(using, done, outbox_settings().keep_days)
        for outbox_id, reason in left:
            rows.mark_left(using, [outbox_id], reason)
    except Exception:  # the rows stay pending: the relay sends them (duplicates at worst)
        logger.exception("CQRS could not update %d outbox row(s)", len(done) + len(left))


def _name(payload: TransportPayload) -> str:
    return f"{payload.signal_type.value} {payload.cqrs_id}:{payload.instance_pk}"
