"""After commit, a per-process background publisher sends the fresh rows and marks them sent.

The committing thread only appends the committed row ids (with the events it still holds in
memory) to a queue and returns: no broker call, no database statement and no waiting on the
request's critical path. One daemon thread per process drains the queue in batches: one
`produce_many` (the transport pipelines the confirms), then ONE statement that deletes the batch
(or stamps `sent_at` when `keep_days` > 0). Whatever it cannot send (broker down or slow, the
settings changed, the process exits) stays in the outbox, noted for the relay, which sends it.
A failure pauses this process's publisher for `pause_after_failure` seconds, during which new
rows are left to the relay at once. Nothing here raises into user code.

Order. No query checks for older unsent events of the same row before sending: per-row order
across processes (and behind rows left to the relay) is the relay's job, and the relay keeps
it. A fresh event may therefore overtake an older event of the same row that sits in the outbox
(the broker was down when the older one committed, or another process was killed before
sending it). That is harmless: every event of a row carries the row's `cqrs_revision`, which
grows with each committed change, and a replica applies an event only if its revision is newer
than the one it holds (a DELETE leaves a tombstone with its revision), so the overtaken older
event arrives later and is skipped as stale; the replica ends in the newest state either way.
Within one process the queue is FIFO, so one thread's commits go out in commit order.

Fork: the thread and the queue belong to the process that started them; a child starts with an
empty queue and its own thread on first use (what the parent had queued is the parent's).
Exit: `atexit` flushes for at most `publish_timeout` seconds; the rest is the relay's.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.db import connections

from cqrs_core.payload import TransportPayload, expires_in
from dj_cqrs import conf
from dj_cqrs.controller import producer
from dj_cqrs.observability import metrics
from dj_cqrs.outbox import committed, notify, routing, rows
from dj_cqrs.outbox.settings import OutboxSettings, outbox_settings

logger = logging.getLogger("django-cqrs")

Fresh = tuple[int, TransportPayload]
"""(outbox row id, the event as stored: `expires` is set when it is sent)."""

_Item = tuple[str, int, int, TransportPayload, Any]
"""(database alias, settings generation at commit, row id, event, instance copy to serialize)."""

_IDLE_CLOSE = 0.5
"""Seconds without work after which the publisher closes its database connections."""

_LINGER = 0.005
"""Seconds the publisher waits for more events once one arrived (batches, not wake-ups)."""


class _Publisher:
    """The queue and thread of one process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        lock = threading.Lock()
        self.cond = threading.Condition(lock)
        """Signalled when work arrives (the publisher thread waits on it)."""
        self.settled = threading.Condition(lock)
        """Signalled when a batch is settled (`flush` waits on it)."""
        self.queue: collections.deque[_Item] = collections.deque()
        self.busy = 0
        """Items taken from the queue and not yet settled (sent or left to the relay)."""
        self.thread: threading.Thread | None = None
        self.paused_until = 0.0
        self.paused_generation = -1

    # -- committing threads -------------------------------------------------------------------

    def submit(self, items: list[_Item]) -> None:
        with self.cond:
            first = not self.queue
            self.queue.extend(items)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="cqrs-publisher", daemon=True)
                self.thread.start()
            if first or len(self.queue) >= _batch_size():
                self.cond.notify()

    def flush(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.settled:
            while self.queue or self.busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.settled.wait(left)
        return True

    # -- the publisher thread -----------------------------------------------------------------

    def _run(self) -> None:
        connected = False
        while True:
            with self.cond:
                if not self.queue:
                    self.cond.wait(_IDLE_CLOSE if connected else None)
                size = _batch_size()
                if self.queue and len(self.queue) < size:  # let a batch gather: fewer wake-ups
                    self.cond.wait(_LINGER)
                batch = [self.queue.popleft() for _ in range(min(size, len(self.queue)))]
                self.busy = len(batch)
            if not batch:  # idle: hold no database session between bursts
                connected = False
                connections.close_all()
                continue
            try:
                connected = True
                self._settle(batch)
            except Exception:  # the rows are committed and safe; the relay sends them
                logger.exception("CQRS outbox publisher failed; the relay will send the events")
            finally:
                with self.cond:
                    self.busy = 0
                    self.settled.notify_all()

    def _settle(self, batch: list[_Item]) -> None:
        settings = outbox_settings()
        generation = conf.generation()
        by_db: dict[str, list[Fresh]] = {}
        sources: dict[str, list[committed.Source | None]] = {}
        stale: dict[str, list[int]] = {}
        for using, gen, row_id, payload, source in batch:
            if gen == generation:
                by_db.setdefault(using, []).append((row_id, payload))
                sources.setdefault(using, []).append(source)
            else:  # committed under other CQRS settings: this transport is not theirs
                stale.setdefault(using, []).append(row_id)
        for using, ids in stale.items():
            _leave(using, ids, "left to the relay: the CQRS settings changed", settings)
        for using, fresh in by_db.items():
            self._send(using, fresh, sources[using], settings)

    def _send(
        self,
        using: str,
        fresh: list[Fresh],
        sources: list[committed.Source | None],
        settings: OutboxSettings,
    ) -> None:
        ids = [row_id for row_id, _ in fresh]
        if self.paused():
            _leave(using, ids, "left to the relay: the broker failed recently", settings)
            return
        fresh, sources = _still_mine(using, fresh, sources, settings)
        if not fresh:
            return
        filled = committed.fill(using, fresh, sources)
        for row_id, reason in filled.failed:  # kept, noted: the relay retries them later
            _leave(using, [row_id], reason, settings)
        ids = [row_id for row_id, _ in filled.ready]
        if ids:
            expires = expires_in(conf.message_ttl())
            payloads = [dataclasses.replace(p, expires=expires) for _, p in filled.ready]
            outcome = routing.send_checked(payloads, _timed_produce)
            refused = [(ids[i], why, payloads[i]) for i, why in outcome.refused.items()]
            _refused(
                using, [(i, why) for i, why, p in refused if routing.set_aside_when_refused(p)]
            )
            for row_id, why, _ in [r for r in refused if not routing.set_aside_when_refused(r[2])]:
                _leave(using, [row_id], why, settings)
            if outcome.error is not None:  # the relay sends the rest
                self.pause(settings.pause_after_failure)
                settled = set(outcome.sent) | set(outcome.refused)
                left = [row_id for i, row_id in enumerate(ids) if i not in settled]
                error = f"{type(outcome.error).__name__}: {outcome.error}"
                logger.error(
                    "CQRS could not publish %d event(s) after commit (%s); they stay in the "
                    "outbox and `manage.py cqrs_relay` sends them when the broker is back.",
                    len(left),
                    error,
                )
                _leave(using, left, f"fast path failed: {error}", settings)
            ids = [ids[i] for i in outcome.sent]
        try:
            rows.mark_sent(using, ids, settings.keep_days)
            rows.mark_dropped(using, filled.dropped, settings.keep_days)
        except Exception:  # sent but not marked: the relay sends them again (duplicates only)
            logger.exception("CQRS could not mark %d sent outbox row(s)", len(ids))
            connections[using].close_if_unusable_or_obsolete()

    # -- pause --------------------------------------------------------------------------------

    def paused(self) -> bool:
        return time.monotonic() < self.paused_until and self.paused_generation == conf.generation()

    def pause(self, seconds: float) -> None:
        self.paused_until = time.monotonic() + seconds
        self.paused_generation = conf.generation()


def _still_mine(
    using: str,
    fresh: list[Fresh],
    sources: list[committed.Source | None],
    settings: OutboxSettings,
) -> tuple[list[Fresh], list[committed.Source | None]]:
    """The rows whose claim lasts long enough to send them; the others are the relay's.

    A burst that takes longer than the claim (`lease`) to publish, or a transaction that
    committed long after it wrote its rows, must not send a row a relay may send too.
    """
    keep = rows.still_claimed(
        using, [row_id for row_id, _ in fresh], rows.claim_margin(settings.lease)
    )
    if len(keep) == len(fresh):
        return fresh, sources
    lost = len(fresh) - len(keep)
    logger.warning(
        "CQRS outbox: %d event(s) of this process were claimed too long ago (lease %gs); "
        "`manage.py cqrs_relay` sends them.",
        lost,
        settings.lease,
    )
    pairs = [(f, s) for f, s in zip(fresh, sources, strict=True) if f[0] in keep]
    return [f for f, _ in pairs], [s for _, s in pairs]


def _batch_size() -> int:
    try:
        return outbox_settings().batch_size
    except Exception:  # noqa: BLE001  (invalid settings are reported by checks)
        return 200


def _produce(payloads: Sequence[TransportPayload]) -> None:
    """Publish on this thread's transport, once more on a new connection if the first fails."""
    try:
        producer.send(payloads)
        return
    except Exception as exc:
        if routing.refusal(exc):  # the broker answered: another try gets the same answer
            raise
        _drop_thread_transport()
        logger.info("CQRS publish failed (%s); retrying on a new connection", exc)
    try:
        producer.send(payloads)
    except Exception:
        _drop_thread_transport()
        raise


def _timed_produce(payloads: Sequence[TransportPayload]) -> None:
    metrics.timed_send(_produce, payloads, "fast_path")


def _refused(using: str, refused: list[tuple[int, str]]) -> None:
    """Set aside rows the broker refused (see `routing`): they must not jam the relay."""
    metrics.set_aside("refused", len(refused))
    for row_id, reason in refused:
        logger.error(
            "CQRS outbox row %s was set aside: %s. Fix the cause, then "
            "`manage.py cqrs_outbox retry %s` (or `drop %s`).",
            row_id,
            reason,
            row_id,
            row_id,
        )
        try:
            rows.set_aside(using, [row_id], reason)
        except Exception:
            logger.exception("CQRS could not set aside outbox row %s", row_id)


def _drop_thread_transport() -> None:
    try:
        conf.discard_transport()
    except Exception:
        logger.debug("Closing the failed CQRS transport raised", exc_info=True)


def _leave(using: str, ids: Sequence[int], reason: str, settings: OutboxSettings) -> None:
    """Note why rows were left (the relay takes them without waiting `grace`) and wake it."""
    metrics.set_aside("left_to_relay", len(ids))
    try:
        rows.mark_left(using, ids, reason)
    except Exception:
        logger.debug("CQRS could not note why rows were left to the relay", exc_info=True)
        connections[using].close_if_unusable_or_obsolete()
    if settings.notify:
        notify.notify(using)


_lock = threading.Lock()
_publisher: _Publisher | None = None


def _current() -> _Publisher:
    global _publisher
    publisher = _publisher
    if publisher is None or publisher.pid != os.getpid():  # threads do not survive fork()
        with _lock:
            publisher = _publisher
            if publisher is None or publisher.pid != os.getpid():
                publisher = _publisher = _Publisher()
    return publisher


def publish_fresh(
    using: str,
    fresh: Sequence[Fresh],
    sources: Sequence[committed.Source | None] | None = None,
) -> None:
    """Queue rows just committed on `using` for the publisher; returns at once.

    `sources`: per row, the copy of its instance taken at commit that the publisher serializes
    (`committed.snapshot`); rows without one are serialized from the database.
    With the fast path off the rows are simply left to the relay (after `grace`).
    """
    if not fresh:
        return
    try:
        settings = outbox_settings()
        if not settings.fast_path:
            return
        publisher = _current()
        generation = conf.generation()
        if sources is None:
            sources = [None] * len(fresh)
        publisher.submit(
            [
                (using, generation, row_id, payload, source)
                for (row_id, payload), source in zip(fresh, sources, strict=True)
            ]
        )
    except Exception:  # the data is committed and the rows are safe: never raise into user code
        logger.exception("CQRS outbox fast path failed; the relay will send the events")


def flush(timeout: float | None = None) -> bool:
    """Wait until this process's publisher has settled everything queued so far.

    Settled means sent and marked sent, or left to the relay. Returns False if `timeout`
    seconds passed first. Tests call it before they look at the broker.
    """
    publisher = _publisher
    if publisher is None or publisher.pid != os.getpid():
        return True
    return publisher.flush(timeout)


def paused() -> bool:
    """True while this process leaves new rows to the relay after a failure.

    A changed CQRS setting (a new transport) ends the pause.
    """
    publisher = _publisher
    return publisher is not None and publisher.pid == os.getpid() and publisher.paused()


def resume() -> None:
    """End a pause now (tests; or after the broker is known to be back)."""
    publisher = _publisher
    if publisher is not None:
        publisher.paused_until = 0.0


def _flush_at_exit() -> None:
    try:
        timeout = outbox_settings().publish_timeout
    except Exception:  # noqa: BLE001
        timeout = 1.0
    if not flush(timeout):
        logger.warning(
            "CQRS: events committed just before exit were not sent within %gs; "
            "`manage.py cqrs_relay` sends them.",
            timeout,
        )


atexit.register(_flush_at_exit)
