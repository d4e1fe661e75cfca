"""Redis Streams transport for cqrs-core: `CQRS = {'transport': 'redis_streams', ...}`."""

from __future__ import annotations

from cqrs_redis_streams.__about__ import __version__
from cqrs_redis_streams.transport import RedisStreamsTransport

__all__ = ["RedisStreamsTransport", "__version__"]
