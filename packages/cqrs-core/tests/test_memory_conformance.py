from __future__ import annotations

import pytest

from cqrs_core.testing.consuming import crash_in_process
from cqrs_core.testing.suite import IDS, TransportConformance, unique_name
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

    @pytest.fixture
    def crash_consumer(self, transport_options):
        # The broker lives in this process: a crash is a transport dropped without close().
        def crash(**overrides):
            options = {**transport_options, **overrides}
            crash_in_process(lambda: MemoryTransport(options), cqrs_ids=IDS, timeout=15)

        return crash
