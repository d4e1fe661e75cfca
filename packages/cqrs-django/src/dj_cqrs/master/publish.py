"""The one place where events are handed to the broker.

`publish(payloads, using)` is called by code that has events outside a model save (`cqrs_sync`,
on-commit groups in `'on_commit'` mode). With the outbox (the default) it writes the events to
the outbox on `using` and sends them after commit; `send_now` is the direct broker call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cqrs_core.payload import TransportPayload
from dj_cqrs import conf

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
    for attempt in (1, 2):
        try:
            conf.get_transport().produce_many(payloads)
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
        return True
    return False
