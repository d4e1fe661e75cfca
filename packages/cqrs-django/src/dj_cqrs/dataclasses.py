"""`TransportPayload` under its django-cqrs import path (the same class as in cqrs-core).

As in 3.x, `TransportPayload.from_message(dct)` gives a body without `expires` the lifetime
`CQRS['master']['CQRS_MESSAGE_TTL']` (registered by `dj_cqrs.conf`), a payload built without a
`correlation_id` gets the configured correlation function's (`dj_cqrs.correlation`),
`payload.pk` is the instance's primary key and `payload.retries` can be set in place.
"""

from __future__ import annotations

import dj_cqrs.conf  # noqa: F401  (registers the settings TTL for from_message)
import dj_cqrs.correlation  # noqa: F401  (payloads built without one get the correlation id)
from cqrs_core.payload import TransportPayload

__all__ = ["TransportPayload"]
