"""Right after commit, the committing process sends its fresh rows and marks them sent.

The broker call runs on a small per-process thread pool so that the committing thread waits at
most `publish_timeout` seconds, whatever the transport does. A failure pauses the fast path of
this process for `pause_after_failure` seconds: while the broker is down, requests only write
their rows, which the relay sends later. Nothing here raises into user code.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Sequence

from cqrs_core.payload import TransportPayload
from dj_cqrs import conf
from dj_cqrs.outbox import notify, rows
from dj_cqrs.outbox.settings import OutboxSettings, outbox_settings

logger = logging.getLogger("django-cqrs")

Fresh = tuple[int, TransportPayload]
"""(outbox row id, the event with its `expires` set)."""


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.paused_until = 0.0
        self.paused_generation = -1


_state = _State()


def _executor(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    pid = os.getpid()
    with _state.lock:
        if _state.executor is None or _state.pid != pid:  # threads do not survive fork()
            _state.executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=threads, thread_name_prefix="cqrs-publish"
            )
            _state.pid = pid
            _state.paused_until = 0.0
        return _state.executor


def paused() -> bool:
    """True while this process leaves new rows to the relay after a failure.

    A changed CQRS setting (a new transport) ends the pause.
    """
    return time.monotonic() < _state.paused_until and _state.paused_generation == conf.generation()


def resume() -> None:
    """End a pause now (tests; or after the broker is known to be back)."""
    _state.paused_until = 0.0


def _pause(seconds: float) -> None:
    _state.paused_until = time.monotonic() + seconds
    _state.paused_generation = conf.generation()


def _produce(payloads: Sequence[TransportPayload], deadline: float) -> None:
    """Worker thread: publish, retrying once on a new connection if time allows."""
    try:
        conf.get_transport().produce_many(payloads)
        return
    except Exception as exc:
        _drop_thread_transport()
        if time.monotonic() >= deadline:
            raise
        logger.info("CQRS fast path publish failed (%s); retrying on a new connection", exc)
    try:
        conf.get_transport().produce_many(payloads)
    except Exception:
        _drop_thread_transport()
        raise


def _drop_thread_transport() -> None:
    try:
        conf.discard_transport()
    except Exception:
        logger.debug("Closing the failed CQRS transport raised", exc_info=True)


def send(payloads: Sequence[TransportPayload], settings: OutboxSettings) -> str | None:
    """Publish within `publish_timeout`; None on success, else why it failed."""
    timeout = settings.publish_timeout
    deadline = time.monotonic() + timeout / 2
    try:
        future = _executor(settings.publisher_threads).submit(_produce, payloads, deadline)
        future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        return f"the broker did not confirm within publish_timeout={timeout:g}s"
    except Exception as exc:  # noqa: BLE001  (never raise into user code)
        return f"{type(exc).__name__}: {exc}"
    return None


def publish_fresh(using: str, fresh: Sequence[Fresh]) -> bool:
    """Send rows just committed on `using` and mark them sent; True if they were sent.

    Rows are left to the relay (never lost) when the fast path is off or paused, when an
    earlier event of one of their rows is still unsent (sending now would overtake it), or
    when the broker fails or is slow.
    """
    if not fresh:
        return True
    try:
        settings = outbox_settings()
        ids = [row_id for row_id, _ in fresh]
        if not settings.fast_path:
            return False
        if paused():
            _leave(using, ids, "left to the relay: the broker failed recently", settings)
            return False
        keys = {(p.cqrs_id, str(p.instance_pk)) for _, p in fresh}
        if rows.any_earlier_pending(using, keys, before=min(ids)):
            _leave(using, ids, "left to the relay: an earlier event of the row is unsent", settings)
            return False
        error = send([p for _, p in fresh], settings)
        if error is not None:
            _pause(settings.pause_after_failure)
            logger.error(
                "CQRS could not publish %d event(s) after commit (%s); they stay in the outbox "
                "and `manage.py cqrs_relay` sends them when the broker is back.",
                len(ids),
                error,
            )
            _leave(using, ids, f"fast path failed: {error}", settings)
            return False
        rows.mark_sent(using, ids, settings.keep_days)
        return True
    except Exception:  # the data is committed and the rows are safe: never raise into user code
        logger.exception("CQRS outbox fast path failed; the relay will send the events")
        return False


def _leave(using: str, ids: Sequence[int], reason: str, settings: OutboxSettings) -> None:
    try:
        rows.mark_left(using, ids, reason)
    except Exception:
        logger.debug("CQRS could not note why rows were left to the relay", exc_info=True)
    if settings.notify:
        notify.notify(using)
