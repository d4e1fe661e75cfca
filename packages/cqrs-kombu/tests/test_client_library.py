"""A kombu backend whose client library is missing fails at start with the install line."""

from __future__ import annotations

import sys

import pytest

from cqrs_core.exceptions import ConfigurationError
from cqrs_kombu import KombuTransport


def test_missing_redis_client_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not an outage to reconnect from forever: the error names the `pip install` to run."""
    monkeypatch.setitem(sys.modules, "redis", None)  # what `import redis` sees when absent
    with pytest.raises(ConfigurationError) as caught:
        KombuTransport({"url": "redis://127.0.0.1:6379/0", "queue": "q"})
    assert 'pip install "cqrs-kombu[redis]"' in str(caught.value)


def test_installed_client_passes_the_check() -> None:
    transport = KombuTransport({"url": "redis://127.0.0.1:6379/0", "queue": "q"})
    transport.close()
