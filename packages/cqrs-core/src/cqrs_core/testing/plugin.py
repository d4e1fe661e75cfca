"""Opt-in pytest plugin (`-p cqrs_core.testing.plugin`): fixtures for transport tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from cqrs_core.testing.proxy import TcpProxy
from cqrs_core.testing.suite import unique_name


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Make broker-safe names that no other test run uses: `unique("queue")`."""
    return unique_name


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    """Start loopback proxies to a broker (`tcp_proxy(host, port)`); all closed at the end."""
    proxies: list[TcpProxy] = []

    def start(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


def service_unavailable(what: str, detail: object) -> None:
    """Fail under CI (a missing service is a broken run), skip loudly elsewhere."""
    message = f"{what} is not reachable: {detail}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this fails instead of skipping)")
    pytest.skip(message)
