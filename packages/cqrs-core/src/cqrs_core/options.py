"""The settings every transport reads, parsed once from the user's `CQRS` mapping.

Transports receive the mapping users already write (`CQRS = {...}` in Django settings, or the
same dict elsewhere) and call `CommonOptions.from_mapping` for the keys all of them share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from cqrs_core.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEAD_MESSAGE_TTL,
    DEFAULT_EXCHANGE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MESSAGE_TTL,
    DEFAULT_PREFETCH_COUNT,
    DEFAULT_RETRY_DELAY,
)
from cqrs_core.exceptions import ConfigurationError


@dataclasses.dataclass(frozen=True, slots=True)
class CommonOptions:
    """Keys shared by every transport, with the defaults of django-cqrs."""

    queue: str | None = None
    """Replica service name (its queue, consumer group...). Required to consume."""
    exchange: str = DEFAULT_EXCHANGE
    url: str | None = None
    prefetch_count: int = 2 * DEFAULT_BATCH_SIZE
    """Messages the broker hands over ahead of their acks (`consumer_prefetch_count`).

    Unless set, twice the batch size: django-cqrs's 10 would cap every batch at 10 messages,
    and one batch in flight while the next fills keeps the consumer busy."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Most messages handed to the handler at once."""
    batch_timeout: float = 0.05
    """Seconds to wait for a batch to fill before handing over what there is."""
    max_retries: int | None = DEFAULT_MAX_RETRIES
    retry_delay: float = DEFAULT_RETRY_DELAY
    dead_letter_queue: str | None = None
    dead_message_ttl: float | None = DEFAULT_DEAD_MESSAGE_TTL
    message_ttl: float | None = DEFAULT_MESSAGE_TTL
    """TTL assumed for legacy messages that carry no `expires` key."""

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> CommonOptions:
        """Parse the shared keys of a `CQRS` mapping; raise `ConfigurationError` naming the key."""
        replica = _section(options, "replica")
        master = _section(options, "master")
        queue = _opt_str(options, "queue")
        dead_letter_queue = _opt_str(replica, "dead_letter_queue", "CQRS['replica']")
        if dead_letter_queue is None and queue is not None:
            dead_letter_queue = f"dead_letter_{queue}"
        batch_size = _int(
            *_replica_or_top(options, replica, "batch_size", DEFAULT_BATCH_SIZE), minimum=1
        )
        prefetch = options.get("consumer_prefetch_count")
        return cls(
            queue=queue,
            exchange=_opt_str(options, "exchange") or DEFAULT_EXCHANGE,
            url=_opt_str(options, "url"),
            prefetch_count=(
                max(DEFAULT_PREFETCH_COUNT, 2 * batch_size)
                if prefetch is None
                else _int(prefetch, "CQRS['consumer_prefetch_count']", minimum=1)
            ),
            batch_size=batch_size,
            batch_timeout=_number(*_replica_or_top(options, replica, "batch_timeout", 0.05)),
            max_retries=_opt_int(
                replica.get("CQRS_MAX_RETRIES", DEFAULT_MAX_RETRIES),
                "CQRS['replica']['CQRS_MAX_RETRIES']",
            ),
            retry_delay=_number(
                replica.get("CQRS_RETRY_DELAY", DEFAULT_RETRY_DELAY),
                "CQRS['replica']['CQRS_RETRY_DELAY']",
            ),
            dead_letter_queue=dead_letter_queue,
            dead_message_ttl=_opt_number(
                replica.get("dead_message_ttl", DEFAULT_DEAD_MESSAGE_TTL),
                "CQRS['replica']['dead_message_ttl']",
            ),
            message_ttl=_opt_number(
                master.get("CQRS_MESSAGE_TTL", DEFAULT_MESSAGE_TTL),
                "CQRS['master']['CQRS_MESSAGE_TTL']",
            ),
        )

    def require_queue(self) -> str:
        """The replica queue name, or a `ConfigurationError` saying how to set it."""
        if not self.queue:
            raise ConfigurationError(
                "CQRS['queue'] is not set: a replica service must name its queue, "
                "e.g. CQRS = {'transport': 'rabbitmq', 'queue': 'billing'}."
            )
        return self.queue

    def require_dead_letter_queue(self) -> str:
        """The dead-letter queue name (`dead_letter_<queue>` unless configured)."""
        if self.dead_letter_queue:
            return self.dead_letter_queue
        return f"dead_letter_{self.require_queue()}"


def _section(options: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = options.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"CQRS[{key!r}] must be a dict, got {type(value).__name__}.")
    return value


def _replica_or_top(
    options: Mapping[str, Any], replica: Mapping[str, Any], key: str, default: Any
) -> tuple[Any, str]:
    """`CQRS['replica'][key]`, else `CQRS[key]`, else `default`, with where it was found."""
    if key in replica:
        return replica[key], f"CQRS['replica'][{key!r}]"
    if key in options:
        return options[key], f"CQRS[{key!r}]"
    return default, f"CQRS['replica'][{key!r}]"


def _opt_str(options: Mapping[str, Any], key: str, where: str = "CQRS") -> str | None:
    value = options.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}[{key!r}] must be a string, got {value!r}.")
    return value


def _int(value: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{where} must be an integer >= {minimum}, got {value!r}.")
    return value


def _opt_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


_MAX_SECONDS = 10**9
"""About 31 years: larger delays, timeouts and TTLs overflow date arithmetic."""


def _number(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= _MAX_SECONDS  # also false for NaN
    ):
        raise ConfigurationError(
            f"{where} must be a number of seconds from 0 to {_MAX_SECONDS:,}, got {value!r}."
        )
    return float(value)


def _opt_number(value: Any, where: str) -> float | None:
    return None if value is None else _number(value, where)
