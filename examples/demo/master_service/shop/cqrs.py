"""`CQRS['master']['meta_function']`: metadata carried by every event."""

from __future__ import annotations

import time
from typing import Any


def event_meta(obj: Any, **kwargs: Any) -> dict[str, Any]:
    """The wall-clock time the event was written (in the transaction of the change).

    The replica stores it beside its own apply time: that difference is the replication lag.
    """
    return {"written_at": time.time(), "service": "master"}
