from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from cqrs_core.testing.plugin import service_unavailable
from cqrs_core.testing.suite import unique_name

REDIS_URL = os.environ.get("CQRS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A client for inspecting keys; fails under CI (skips elsewhere) when Redis is down."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        service_unavailable(f"Redis ({REDIS_URL})", exc)
    yield client
    client.close()


@pytest.fixture
def stream_options(redis_client: redis.Redis) -> Iterator[dict[str, Any]]:
    """Options with a key prefix and queue of this test only; every key is deleted afterwards."""
    prefix = unique_name("cqrs_rs")  # the key prefix follows the exchange
    yield {
        "url": REDIS_URL,
        "queue": unique_name("replica"),
        "exchange": prefix,
        "redis_streams": {"claim_min_idle": 0.5, "block": 0.2},
    }
    for family in (prefix, f"{prefix}_other"):  # the conformance exchange test uses both
        keys = list(redis_client.scan_iter(match=f"{family}:*", count=1000))
        if keys:
            redis_client.delete(*keys)
