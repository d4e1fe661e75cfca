"""Test helpers for code that talks to a real RabbitMQ: a throwaway virtual host per run.

Test runs share one broker; a vhost of their own keeps their exchanges and queues apart and is
deleted with everything in it at the end.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote


def rabbitmqctl(*args: str) -> bool:
    """Run `rabbitmqctl ARGS`; False when it is missing or fails."""
    try:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@contextlib.contextmanager
def temporary_vhost(prefix: str = "cqrs_test", *, user: str = "guest") -> Iterator[str | None]:
    """Create a vhost `<prefix>_<random>` that `user` may use; delete it on exit.

    Yields None when `rabbitmqctl` is not available here: callers then fall back to `/` with
    unique exchange and queue names, or report the service as unavailable.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    created = rabbitmqctl("add_vhost", name) and rabbitmqctl(
        "set_permissions", "-p", name, user, ".*", ".*", ".*"
    )
    try:
        yield name if created else None
    finally:
        if created:
            rabbitmqctl("delete_vhost", name)


@contextlib.contextmanager
def required_vhost(prefix: str, host: str = "127.0.0.1", port: int = 5672) -> Iterator[str]:
    """`temporary_vhost` on the RabbitMQ at `host:port`, for a pytest fixture.

    When the broker does not answer or `rabbitmqctl` is missing, the test fails under CI and
    is skipped elsewhere (`cqrs_core.testing.plugin.service_unavailable`).
    """
    import socket

    from cqrs_core.testing.plugin import service_unavailable  # imports pytest: tests only

    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        service_unavailable(f"RabbitMQ at {host}:{port}", exc)
    with temporary_vhost(prefix) as name:
        if name is None:
            service_unavailable("rabbitmqctl", "needed to create a test virtual host")
        assert name is not None
        yield name


def amqp_url(
    vhost: str | None, host: str = "127.0.0.1", port: int = 5672, credentials: str = "guest:guest"
) -> str:
    """The AMQP URL of `vhost` (`/` when None)."""
    return f"amqp://{credentials}@{host}:{port}/{quote(vhost or '/', safe='')}"
