from __future__ import annotations

import pytest

from cqrs_core.testing.suite import TransportConformance, unique_name
from cqrs_core.transports.memory import MemoryBroker, MemoryTransport


class TestMemoryConformance(TransportConformance):
    consume_timeout = 15.0

    @pytest.fixture
    def transport_class(self):
        return MemoryTransport

    @pytest.fixture
    def transport_options(self):
        broker = unique_name("broker")
        yield {"url": f"memory://{broker}", "queue": unique_name("replica")}
        MemoryBroker.drop(broker)
