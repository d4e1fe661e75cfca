"""Real backends for the kombu tests: RabbitMQ (py-amqp), Redis and a shared folder.

Every test gets its own names (exchange, queues, Redis key prefix, folder) and everything it
created is deleted afterwards. A backend that cannot be reached skips the test, or fails it
under CI (see `cqrs_core.testing.plugin.service_unavailable`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cqrs_core.testing.suite import unique_name
from cqrs_kombu._testing import (
    AMQP_PORT,
    REDIS_PORT,
    amqp_url,
    cleanup_amqp,
    cleanup_redis,
    queue_family,
    redis_url,
    require,
)


@pytest.fixture
def backend_options(
    request: pytest.FixtureRequest, tmp_path: Any
) -> Iterator[Callable[[str], dict[str, Any]]]:
    """`backend_options(kind)` → CQRS options with unique names on that backend; cleaned up."""
    cleanups: list[Callable[[], Any]] = []

    def make(kind: str, *, port: int | None = None) -> dict[str, Any]:
        require(kind)
        queue = unique_name("kq")
        exchange = unique_name("kx")
        if kind == "amqp":
            options = {"url": amqp_url(port or AMQP_PORT)}
            cleanups.append(lambda: cleanup_amqp(exchange, queue_family(queue)))
            # The conformance suite's exchange test uses `<exchange>_other` too.
            cleanups.append(lambda: cleanup_amqp(f"{exchange}_other", []))
        elif kind == "redis":
            prefix = f"{unique_name('kr')}:"
            options = {
                "url": redis_url(port or REDIS_PORT),
                "transport_options": {"global_keyprefix": prefix},
            }
            cleanups.append(lambda: cleanup_redis(prefix))
        else:
            folder = tmp_path / unique_name("kf")
            options = {"url": f"filesystem://{folder}"}
        return {**options, "queue": queue, "exchange": exchange}

    yield make
    for cleanup in cleanups:
        cleanup()
