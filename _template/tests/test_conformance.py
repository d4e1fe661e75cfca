from __future__ import annotations

import pytest

from cqrs_core.testing.suite import TransportConformance, unique_name
from cqrs_TEMPLATE import TemplateTransport

BROKER_URL = "TEMPLATE://127.0.0.1"


class TestTemplateConformance(TransportConformance):
    """The cqrs-core conformance suite against a real TEMPLATE broker.

    Use the `service_unavailable(what, detail)` fixture of `cqrs_core.testing.plugin` when the
    broker cannot be reached: it fails under CI and skips elsewhere.
    """

    @pytest.fixture
    def transport_class(self):
        return TemplateTransport

    @pytest.fixture
    def transport_options(self):
        options = {
            "url": BROKER_URL,
            "queue": unique_name("replica"),
            "exchange": unique_name("cqrs"),
        }
        yield options
        # Delete every queue/topic/key this test created on the broker, including the
        # `<exchange>_other` / `<queue>_other` ones of the suite's exchange test.
