"""Options of the Redis Streams transport, read from the user's `CQRS` mapping."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from cqrs_core import ConfigurationError

DEFAULT_URL = "redis://127.0.0.1:6379/0"
SECTION = "redis_streams"


@dataclasses.dataclass(frozen=True, slots=True)
class StreamSettings:
    """`CQRS['url']` plus the keys of `CQRS['redis_streams']`, with their defaults."""

    url: str = DEFAULT_URL
    prefix: str = "cqrs"
    """First part of every key: `<prefix>:<cqrs_id>`, `<prefix>:retry:<queue>`..."""
    claim_min_idle: float = 30.0
    """Seconds a taken message may stay unacknowledged before another consumer reclaims it.

    Must exceed the time the handler takes for a batch, or a slow batch is applied twice.
    """
    block: float = 0.5
    """Seconds one XREADGROUP waits for messages (at most 1: `stop()` and `on_tick` rely on it)."""
    retention: float | None = None
    """Seconds a published message is kept in its stream (None: until trimmed by hand)."""
    reap_after: float = 3600.0
    """Seconds after which an idle consumer with nothing pending is removed from its group."""
    connect_timeout: float = 5.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> StreamSettings:
        section = options.get(SECTION) or {}
        if not isinstance(section, Mapping):
            raise ConfigurationError(
                f"CQRS[{SECTION!r}] must be a dict, got {type(section).__name__}."
            )
        known = [f.name for f in dataclasses.fields(cls) if f.name != "url"]  # url: CQRS['url']
        unknown = set(section) - set(known)
        if unknown:
            hint = " (the URL is CQRS['url'])" if "url" in unknown else ""
            raise ConfigurationError(
                f"Unknown key(s) in CQRS[{SECTION!r}]: {', '.join(sorted(unknown))}{hint}. "
                f"Known: {', '.join(known)}."
            )
        url = options.get("url") or DEFAULT_URL
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"CQRS['url'] must be a Redis URL such as 'redis://127.0.0.1:6379/0', got {url!r}."
            )
        # Keys follow CQRS['exchange'] (default "cqrs"), so services on different exchanges
        # never share streams, as on RabbitMQ.
        prefix = section.get("prefix", options.get("exchange") or "cqrs")
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError(f"CQRS[{SECTION!r}]['prefix'] must be a non-empty string.")
        block = _seconds(section, "block", 0.5)
        if not 0 < block <= 1:
            raise ConfigurationError(
                f"CQRS[{SECTION!r}]['block'] must be > 0 and <= 1 second, got {block!r}."
            )
        retention = section.get("retention")
        return cls(
            url=url,
            prefix=prefix,
            claim_min_idle=_seconds(section, "claim_min_idle", 30.0),
            block=block,
            retention=None if retention is None else _seconds(section, "retention", 0),
            reap_after=_seconds(section, "reap_after", 3600.0),
            connect_timeout=_seconds(section, "connect_timeout", 5.0),
        )

    def stream(self, cqrs_id: str) -> str:
        """The stream every event of `cqrs_id` is appended to."""
        return f"{self.prefix}:{cqrs_id}"

    def retries(self, queue: str) -> str:
        """The sorted set of `queue`'s retries, scored by due time (ms since the epoch)."""
        return f"{self.prefix}:retry:{queue}"

    def dead(self, queue: str) -> str:
        """The stream of `queue`'s dead letters."""
        return f"{self.prefix}:dead:{queue}"


def _seconds(section: Mapping[str, Any], key: str, default: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigurationError(
            f"CQRS[{SECTION!r}][{key!r}] must be a number of seconds >= 0, got {value!r}."
        )
    return float(value)
