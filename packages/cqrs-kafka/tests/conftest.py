from __future__ import annotations

from collections.abc import Iterator

import pytest

from cqrs_core.testing.plugin import service_unavailable
from cqrs_kafka.testing import kafka_bootstrap as _kafka_bootstrap


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of the test Kafka (Tansu started for the session, or the env's)."""
    try:
        context = _kafka_bootstrap()
        bootstrap = context.__enter__()
    except Exception as exc:  # noqa: BLE001 - any failure means no broker
        service_unavailable("Kafka (tansu)", exc)
    try:
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure means no broker
        context.__exit__(None, None, None)
        service_unavailable(f"Kafka at {bootstrap}", exc)
    try:
        yield bootstrap
    finally:
        context.__exit__(None, None, None)


@pytest.fixture
def kafka_options(kafka_bootstrap: str, unique) -> Iterator[dict]:
    """Options with a topic prefix and group (queue) no other test uses; cleaned up after."""
    from cqrs_kafka.testing import FAST_CONSUMER, cleanup

    exchange = unique("t")
    prefix = exchange + "."  # the topic prefix follows the exchange (the exchange test's too)
    queue = unique("replica")
    options = {
        "bootstrap_servers": kafka_bootstrap,
        "queue": queue,
        "exchange": exchange,
        "kafka": {
            "partitions": 2,
            "replication_factor": 1,
            "publish_timeout": 10,
            "consumer": dict(FAST_CONSUMER),
        },
    }
    yield options
    groups = [queue, f"{queue}_other", f"{queue}.dead-letters"]
    cleanup(kafka_bootstrap, prefix, groups)
    cleanup(kafka_bootstrap, f"{exchange}_other.", [f"{queue}_other"])
