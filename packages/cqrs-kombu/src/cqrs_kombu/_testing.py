"""Helpers for this package's tests against real brokers (importable under importlib mode)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cqrs_core.testing.plugin import service_unavailable

if TYPE_CHECKING:
    from cqrs_core.payload import TransportPayload

AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 7
BACKENDS = ("amqp", "redis", "filesystem")


def reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2):
        return True
    return False


def require(backend: str) -> None:
    if backend == "amqp" and not reachable(AMQP_HOST, AMQP_PORT):
        service_unavailable("RabbitMQ", f"{AMQP_HOST}:{AMQP_PORT}")
    if backend == "redis" and not reachable(REDIS_HOST, REDIS_PORT):
        service_unavailable("Redis", f"{REDIS_HOST}:{REDIS_PORT}")


def amqp_url(port: int = AMQP_PORT) -> str:
    return f"amqp://guest:guest@{AMQP_HOST}:{port}//"


def redis_url(port: int = REDIS_PORT) -> str:
    return f"redis://{REDIS_HOST}:{port}/{REDIS_DB}"


def cleanup_amqp(exchange: str, queues: list[str]) -> None:
    import amqp

    with contextlib.suppress(Exception):
        conn = amqp.Connection(f"{AMQP_HOST}:{AMQP_PORT}", userid="guest", password="guest")
        conn.connect()
        try:
            for queue in queues:
                channel = conn.channel()
                with contextlib.suppress(Exception):
                    channel.queue_delete(queue)
            channel = conn.channel()
            with contextlib.suppress(Exception):
                channel.exchange_delete(exchange)
        finally:
            conn.close()


def cleanup_redis(prefix: str) -> int:
    import redis

    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=REDIS_DB)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
    return len(keys)


def redis_queue_length(options: dict[str, Any], queue: str) -> int:
    """Messages waiting in `queue` (every priority list) under the options' key prefix."""
    import redis

    prefix = options["transport_options"]["global_keyprefix"]
    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=REDIS_DB)
    try:
        return sum(client.llen(key) for key in client.scan_iter(match=f"{prefix}{queue}*"))
    finally:
        client.close()


def queue_family(queue: str) -> list[str]:
    names = []
    for base in (queue, f"{queue}_other"):
        names += [base, f"dead_letter_{base}", f"delayed_{base}"]
    return names


def consume_to_file(options: dict[str, Any], path: str, pause: float) -> None:
    """Consume forever, appending the pk of every applied message to `path` (one a line).

    Each batch sleeps `pause` seconds first (a slow database), so a test can SIGKILL this
    process while a batch is being applied and new messages keep arriving.
    """
    import time

    from cqrs_core.messages import Outcome
    from cqrs_core.testing.suite import IDS
    from cqrs_kombu import KombuTransport

    transport = KombuTransport(options)
    with open(path, "a", encoding="ascii") as out:

        def handler(payloads: Sequence[TransportPayload]) -> list[Outcome]:
            time.sleep(pause)
            out.write("".join(f"{p.instance_pk}\n" for p in payloads))
            out.flush()
            return [Outcome.applied()] * len(payloads)

        transport.consume(handler, cqrs_ids=IDS, on_ready=lambda: print("ready", flush=True))


if __name__ == "__main__":
    import json
    import sys

    consume_to_file(json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
