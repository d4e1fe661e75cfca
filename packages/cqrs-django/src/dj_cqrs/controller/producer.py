"""`produce(payload)`: the one function every published event goes through, as in 3.x.

Test suites written for django-cqrs 3.x patch it (`mock.patch('dj_cqrs.controller.producer
.produce')`) and look at the payloads right after a save. While it is patched, or while the
configured transport is a 3.x-style class (`conf.legacy_transport_class()`), the master calls it
once per event, at commit, in the committing thread (`synchronous()`); otherwise the batched
background publisher sends events with `produce_many`, which is much faster on a real broker.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from cqrs_core.payload import TransportPayload
from dj_cqrs.observability import tracing


def produce(payload: TransportPayload) -> None:
    """Send one event now through the configured transport.

    Raises:
        cqrs_core.exceptions.PublishError: the broker did not accept it (a legacy class may
            log and return instead, as 3.x transports do).
    """
    with tracing.sending((payload,)) as (payload,):  # tracing (issue 16): a `send` span
        legacy = legacy_class()
        if legacy is not None:
            legacy.produce(payload)
            return
        from dj_cqrs.conf import get_transport

        get_transport().produce(payload)


_ORIGINAL = produce


def legacy_class() -> Any:
    """The configured 3.x-style transport class (`BaseTransport` subclass), or None."""
    from dj_cqrs import conf

    get = getattr(conf, "legacy_transport_class", None)
    return None if get is None else get()


def patched() -> bool:
    """True while `produce` is replaced (a test's `mock.patch`): looked up on the module."""
    return getattr(sys.modules[__name__], "produce", _ORIGINAL) is not _ORIGINAL


def synchronous() -> bool:
    """Whether events go one by one through `produce` at commit instead of the publisher."""
    return patched() or legacy_class() is not None


def send(payloads: Sequence[TransportPayload]) -> None:
    """Send a batch: one `produce` call per event when `synchronous()`, else `produce_many`.

    Raises:
        Exception: the broker (or the patched function) failed; earlier events may be sent.
    """
    if synchronous():
        module = sys.modules[__name__]
        for payload in payloads:
            module.produce(payload)
        return
    from dj_cqrs.conf import get_transport

    with tracing.sending(payloads) as payloads:  # tracing (issue 16): a `send` span
        get_transport().produce_many(payloads)
