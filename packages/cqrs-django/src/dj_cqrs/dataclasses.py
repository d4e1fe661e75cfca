"""`TransportPayload` under its django-cqrs import path (the same class as in cqrs-core).

As in 3.x, `TransportPayload.from_message(dct)` gives a body without `expires` the lifetime
`CQRS['master']['CQRS_MESSAGE_TTL']` (registered by `dj_cqrs.conf`), `payload.pk` is the
instance's primary key and `payload.retries` can be set in place.
"""

from __future__ import annotations

import dj_cqrs.conf  # noqa: F401  (registers the settings TTL for from_message)
from cqrs_core.payload import TransportPayload

__all__ = ["TransportPayload"]
