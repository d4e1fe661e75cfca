"""The core conformance suite on each kombu backend we support."""

from __future__ import annotations

import pytest

from cqrs_core.testing.suite import TransportConformance
from cqrs_kombu import KombuTransport


class TestKombuConformance(TransportConformance):
    consume_timeout = 20.0

    @pytest.fixture(params=["amqp", "redis", "filesystem"])
    def backend(self, request):
        return request.param

    @pytest.fixture
    def transport_class(self):
        return KombuTransport

    @pytest.fixture
    def transport_options(self, backend, backend_options):
        return backend_options(backend)
