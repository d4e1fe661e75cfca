from __future__ import annotations

import pytest
from cqrs_core.testing.suite import TransportConformance

from cqrs_redis_streams import RedisStreamsTransport


class TestRedisStreamsConformance(TransportConformance):
    consume_timeout = 20.0

    @pytest.fixture
    def transport_class(self):
        return RedisStreamsTransport

    @pytest.fixture
    def transport_options(self, stream_options):
        return stream_options
