"""The relay: sends what the fast path left in the outbox, in per-row commit order.

Several relays may run at once. On databases with `SELECT ... FOR UPDATE SKIP LOCKED`
(PostgreSQL, MySQL 8, Oracle) a relay locks its batch for the time it sends it; elsewhere
(SQLite) it claims the batch with a conditional UPDATE of `claimed_by`/`claimed_until`, a lease
that another relay may take over once it has run out. Either way a row held by another relay
blocks the later rows of the same (cqrs_id, pk), so no event overtakes an earlier one.

A row is written claimed by the process that commits it when that process sends it itself
(`rows.claim`): no relay takes it before the claim runs out, so a burst that takes its
publisher longer than `grace` is still sent once. A row the broker refuses for good (an
unroutable directed SYNC) is set aside with its reason (`routing`) and holds back nothing;
`cqrs_outbox set-aside|retry|drop` deal with it.
"""

from __future__ import annotations

import datetime
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from django.db import connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from cqrs_core.exceptions import MalformedMessage
from cqrs_core.payload import TransportPayload, expires_in
from dj_cqrs import conf
from dj_cqrs.controller import producer
from dj_cqrs.observability import metrics
from dj_cqrs.outbox import committed, notify, retention, routing, rows
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.settings import OutboxSettings, outbox_settings

logger = logging.getLogger("django-cqrs")

_PURGE_EVERY = 600.0
_FIRST_BACKOFF = 0.5


class Relay:
    """Sends pending outbox rows of one database until stopped."""

    def __init__(
        self,
        using: str = "default",
        *,
        settings: OutboxSettings | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.using = using
        self.settings = settings or outbox_settings()
        self.token = uuid.uuid4().hex
        self.on_batch = on_batch
        self.sent = 0
        """Rows sent since start."""
        self.undecodable: set[int] = set()
        """Rows whose body is not an event: never sent, skipped by `until_empty`."""
        self.held: dict[int, float] = {}
        """Rows whose event could not be serialized → when to try them again (monotonic)."""
        self.failures = 0
        """Consecutive failed batches (the backoff grows with it)."""
        self._stop = threading.Event()
        self._listener: notify.Listener | None = None
        if self.settings.notify and notify.supported(using):
            self._listener = notify.Listener(using)
        self._next_purge = 0.0
        self.horizon: int | None = None
        """With `run(until_empty=True)`: the last row pending when it started."""

    # -- loop --------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, until_empty: bool = False) -> int:
        """Send batches until `stop()`, or with `until_empty` until every row that was pending
        when it started has been sent (rows younger than `grace` included, after their grace).

        Returns:
            How many rows were sent.
        """
        horizon = None
        if until_empty:
            horizon = (
                OutboxEvent.objects.using(self.using)
                .filter(sent_at__isnull=True)
                .order_by("-id")
                .values_list("id", flat=True)
                .first()
            )
            self.horizon = horizon
        try:
            while not self.stopping:
                try:
                    count = self.run_once()
                except Exception as exc:  # broker or database down: back off, never die  # noqa: BLE001  (fall back to polling)
                    self._failed(exc)
                    continue
                self.failures = 0
                if self.on_batch is not None and count:
                    self.on_batch(count)
                self._maybe_purge()
                if count:
                    continue
                if until_empty:
                    left = self._sendable().exclude(id__in=self._skipped())
                    if horizon is None or not left.filter(id__lte=horizon).exists():
                        break
                    self._stop.wait(min(self.settings.poll_interval, 0.2))
                    continue
                self._wait(self.settings.poll_interval)
        finally:
            if self._listener is not None:
                self._listener.close()
        return self.sent

    def _sendable(self) -> QuerySet[OutboxEvent]:
        """Unsent rows that are not set aside (whoever holds them now)."""
        return OutboxEvent.objects.using(self.using).filter(
            sent_at__isnull=True, set_aside_at__isnull=True
        )

    def pending_count(self) -> int:
        """Rows still to send (held ones included), but undecodable and set-aside rows."""
        self._skipped()  # forget holds that ran out
        left = self._sendable().exclude(id__in=list(self.undecodable))
        if self.horizon is not None:  # `run(until_empty=True)`: rows pending when it started
            left = left.filter(id__lte=self.horizon)
        return left.count()

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        delay = min(self.settings.max_backoff, _FIRST_BACKOFF * 2 ** (self.failures - 1))
        delay *= random.uniform(0.8, 1.2)  # relays that failed together do not retry together
        if self.failures == 1 or self.failures % 10 == 0:
            logger.warning(
                "CQRS relay: sending failed %d time(s) in a row (%s: %s); retrying in %.1fs",
                self.failures,
                type(exc).__name__,
                exc,
                delay,
            )
        try:
            conf.discard_transport()
        except Exception:
            logger.debug("Closing the failed CQRS transport raised", exc_info=True)
        connections[self.using].close_if_unusable_or_obsolete()
        self._stop.wait(delay)

    def _wait(self, timeout: float) -> None:
        if self._listener is not None:
            try:
                self._listener.wait(timeout)
                return
            except Exception:
                logger.info("CQRS relay: LISTEN failed; polling instead", exc_info=True)
                self._listener.close()
                self._listener = None
        self._stop.wait(timeout)

    def _maybe_purge(self) -> None:
        if self.settings.keep_days <= 0 or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + _PURGE_EVERY
        deleted = retention.purge(self.using, self.settings.keep_days)
        if deleted:
            logger.info("CQRS relay: deleted %d sent outbox row(s)", deleted)

    # -- one batch ---------------------------------------------------------------------------

    def run_once(self) -> int:
        """Send one batch of eligible rows; return how many were sent.

        Raises:
            Exception: the broker or the database failed; nothing of the batch is marked sent.
        """
        if connections[self.using].features.has_select_for_update_skip_locked:
            return self._locked_batch()
        return self._claimed_batch()

    def _eligible(self, now: datetime.datetime) -> QuerySet[OutboxEvent]:
        """Unsent rows old enough that their own process no longer sends them (or left them)."""
        young = now - datetime.timedelta(seconds=self.settings.grace)
        eligible = OutboxEvent.objects.using(self.using).filter(
            Q(created_at__lte=young) | Q(attempts__gt=0),
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),  # nobody else's now
            sent_at__isnull=True,
            set_aside_at__isnull=True,
        )
        self._skipped()  # forget holds that ran out
        return eligible.exclude(id__in=list(self.held)) if self.held else eligible

    def _locked_batch(self) -> int:
        with transaction.atomic(using=self.using):
            batch = list(
                self._eligible(timezone.now())
                .select_for_update(skip_locked=True)
                .order_by("id")[: self.settings.batch_size]
            )
            if not batch:
                return 0
            return self._send(batch)

    def _claimed_batch(self) -> int:
        now = timezone.now()
        manager = OutboxEvent.objects.using(self.using)
        free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
        ids = list(
            self._eligible(now)
            .filter(free)
            .order_by("id")
            .values_list("id", flat=True)[: self.settings.batch_size]
        )
        if not ids:
            return 0
        until = now + datetime.timedelta(seconds=self.settings.lease)
        manager.filter(free, id__in=ids, sent_at__isnull=True).update(
            claimed_by=self.token, claimed_until=until
        )
        batch = list(manager.filter(id__in=ids, claimed_by=self.token).order_by("id"))
        try:
            return self._send(batch)
        finally:
            manager.filter(id__in=ids, claimed_by=self.token, sent_at__isnull=True).update(
                claimed_by="", claimed_until=None
            )

    def _send(self, batch: Sequence[OutboxEvent]) -> int:
        sendable = self.in_order(batch)
        if not sendable:
            return 0
        payloads, sendable = self._decoded(sendable)
        if not sendable:
            return 0
        filled = committed.fill(self.using, list(zip(sendable, payloads, strict=True)))
        self._hold(filled.failed)
        ready = [row for row, _ in filled.ready]
        outcome = routing.send_checked([p for _, p in filled.ready], _send_batch)
        sent = [ready[i].id for i in outcome.sent]
        rows.mark_sent(self.using, sent, self.settings.keep_days)
        rows.mark_dropped(self.using, [r.id for r in filled.dropped], self.settings.keep_days)
        self.sent += len(sent)
        refused = [(ready[i], reason, filled.ready[i][1]) for i, reason in outcome.refused.items()]
        self._set_aside([(r, why) for r, why, p in refused if routing.set_aside_when_refused(p)])
        self._hold([(r, why) for r, why, p in refused if not routing.set_aside_when_refused(p)])
        if outcome.error is not None:
            done = set(outcome.sent) | set(outcome.refused)
            self._note_error([r.id for i, r in enumerate(ready) if i not in done], outcome.error)
            if not sent and not outcome.refused:
                raise outcome.error  # nothing moved: back off (`run`)
        return len(sent) + len(outcome.refused)

    def _set_aside(self, refused: Sequence[tuple[OutboxEvent, str]]) -> None:
        """Rows the broker refused: out of the way, with the reason, until retried by hand."""
        metrics.set_aside("refused", len(refused))
        for row, reason in refused:
            logger.error(
                "CQRS relay: outbox row %s (%s) was set aside: %s. The other events go on; "
                "fix the cause, then `manage.py cqrs_outbox retry %s` (or `drop %s`).",
                row.id,
                row,
                reason,
                row.id,
                row.id,
            )
            rows.set_aside(self.using, [row.id], f"relay: {reason}")

    def _hold(self, failed: Sequence[tuple[OutboxEvent, str]]) -> None:
        """Rows whose event could not be serialized: noted, and left alone for a while.

        They are retried after `max_backoff` seconds (a fixed serializer, a row fixed by hand),
        and do not keep `until_empty` waiting.
        """
        if not failed:
            return
        until = time.monotonic() + max(self.settings.max_backoff, 1.0)
        metrics.set_aside("unserializable", len(failed))
        for row, reason in failed:
            self.held[row.id] = until
            try:
                rows.mark_left(self.using, [row.id], f"relay: {reason}")
            except Exception:
                logger.debug("CQRS relay could not note the error on the row", exc_info=True)

    def _skipped(self) -> list[int]:
        """Ids this relay does not take now: undecodable rows, held rows (see `_hold`)."""
        now = time.monotonic()
        for row_id in [i for i, until in self.held.items() if until <= now]:
            del self.held[row_id]
        return [*self.undecodable, *self.held]

    def _decoded(
        self, batch: Sequence[OutboxEvent]
    ) -> tuple[list[TransportPayload], list[OutboxEvent]]:
        """The events of `batch` and their rows, without rows whose body is not an event.

        Such a row (edited by hand) is never sent: it is logged and marked with the reason, so
        `cqrs_outbox` and the admin show it, and the rest of the batch still goes out.
        """
        expires = expires_in(conf.message_ttl())
        payloads: list[TransportPayload] = []
        decoded: list[OutboxEvent] = []
        for row in batch:
            try:
                payloads.append(rows.payload_of(row, expires=expires))
            except MalformedMessage as exc:
                logger.error(
                    "CQRS outbox row %s cannot be sent: its body is not an event (%s). Fix or "
                    "delete the row (admin: CQRS outbox events).",
                    row.id,
                    exc,
                )
                rows.mark_left(self.using, [row.id], f"relay: undecodable body: {exc}")
                self.undecodable.add(row.id)
                metrics.set_aside("undecodable")
            else:
                decoded.append(row)
        return payloads, decoded

    def in_order(self, batch: Sequence[OutboxEvent]) -> list[OutboxEvent]:
        """The rows of `batch` that no unsent earlier row of the same (cqrs_id, pk) precedes."""
        keys = {(r.cqrs_id, r.instance_pk) for r in batch}
        ids = [r.id for r in batch]
        first = rows.earlier_pending(self.using, keys, before=max(ids), exclude=ids)
        return [r for r in batch if r.id < first.get((r.cqrs_id, r.instance_pk), r.id + 1)]

    def _note_error(self, ids: list[int], exc: Exception) -> None:
        if self.failures:  # only the first failure of a streak is written: no write storm
            return
        try:
            rows.mark_left(self.using, ids, f"relay: {type(exc).__name__}: {exc}")
        except Exception:
            logger.debug("CQRS relay could not note the error on the rows", exc_info=True)


def _send_batch(payloads: Sequence[TransportPayload]) -> None:
    metrics.timed_send(producer.send, payloads, "relay")
