from __future__ import annotations

import pytest

from cqrs_core.testing.suite import TransportConformance
from cqrs_kafka import KafkaTransport

pytestmark = pytest.mark.broker("kafka")


class TestKafkaConformance(TransportConformance):
    consume_timeout = 40.0

    @pytest.fixture
    def transport_class(self):
        return KafkaTransport

    @pytest.fixture
    def transport_options(self, kafka_options):
        return kafka_options
