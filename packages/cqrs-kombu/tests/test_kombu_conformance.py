"""The core conformance suite on each kombu backend we support."""

from __future__ import annotations

import pytest

from cqrs_core.testing.suite import TransportConformance
from cqrs_kombu import KombuTransport


class TestKombuConformance(TransportConformance):
    # A hang guard, not a speed limit (waits end as soon as the messages arrive): room for a
    # consumer subprocess that starts slowly on a busy machine.
    consume_timeout = 60.0

    @pytest.fixture(params=["amqp", "redis", "filesystem"])
    def backend(self, request):
        return request.param

    @pytest.fixture
    def transport_class(self):
        return KombuTransport

    @pytest.fixture
    def transport_options(self, backend, backend_options):
        options = backend_options(backend)
        if backend == "redis":
            # A killed consumer's messages come back after the visibility timeout (60 s by
            # default): short enough for the crash test, long enough for every batch here.
            options["transport_options"] = {**options["transport_options"], "visibility_timeout": 5}
        return options
