"""Names shared by masters, replicas and transports."""

from __future__ import annotations

import enum


class SignalType(str, enum.Enum):
    """Type of the change that produced an event (the wire value is the member's value)."""

    SAVE = "SAVE"
    """The master model has been saved."""

    DELETE = "DELETE"
    """The master model has been deleted."""

    SYNC = "SYNC"
    """The master model needs synchronization (applied whatever the revision)."""

    def __str__(self) -> str:
        return self.value


DEFAULT_EXCHANGE = "cqrs"
DEFAULT_MESSAGE_TTL = 86400
"""Seconds a message lives when the master does not say (wire reference §2)."""
DEFAULT_MAX_RETRIES = 30
DEFAULT_RETRY_DELAY = 2
DEFAULT_DEAD_MESSAGE_TTL = 864000
DEFAULT_PREFETCH_COUNT = 10
DEFAULT_BATCH_SIZE = 100
"""Most messages a consumer applies in one batch (`CQRS['replica']['batch_size']`)."""
