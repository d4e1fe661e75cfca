"""The cqrs-core conformance suite against the real RabbitMQ."""

from __future__ import annotations

import pytest

from cqrs_core.testing.suite import TransportConformance, unique_name
from cqrs_rabbitmq import RabbitMQTransport

pytestmark = [pytest.mark.broker("rabbitmq"), pytest.mark.timeout(120)]


class TestRabbitMQConformance(TransportConformance):
    # A hang guard, not a speed limit (waits end as soon as the messages arrive): room for a
    # consumer subprocess that starts slowly on a busy machine.
    consume_timeout = 45.0

    @pytest.fixture
    def transport_class(self):
        return RabbitMQTransport

    @pytest.fixture
    def transport_options(self, rabbit_url, cleanup):
        options = {
            "url": rabbit_url,
            "exchange": unique_name("x"),
            "queue": unique_name("replica"),
            "rabbitmq": {"publish_timeout": 5, "reconnect_delay": 0.1},
        }
        cleanup(queue=options["queue"], exchange=options["exchange"])
        cleanup(queue=f"{options['queue']}_other")  # used by the directed SYNC test
        cleanup(exchange=f"{options['exchange']}_other")  # used by the exchange test
        return options
