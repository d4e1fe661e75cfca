"""TcpProxy: forwards bytes, and its switches cut, refuse and accept connections."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cqrs_core.testing.proxy import TcpProxy

TIMEOUT = 10.0  # only guards against hangs; nothing here is timed


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    """A loopback server that echoes back whatever each connection sends."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[:2]
    stop.set()
    thread.join(TIMEOUT)
    server.close()


@pytest.fixture
def proxy(echo_server: tuple[str, int]) -> Iterator[TcpProxy]:
    with TcpProxy(*echo_server) as p:
        yield p


def connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def echo_through(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def is_dropped(sock: socket.socket) -> bool:
    """True when the peer closed or reset the connection (EOF or an error on use)."""
    try:
        sock.sendall(b"ping")
        return sock.recv(16) == b""
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return True


def test_forwards_bytes_both_ways(proxy: TcpProxy) -> None:
    assert proxy.host == "127.0.0.1" and proxy.address == f"127.0.0.1:{proxy.port}"
    with connect(proxy) as sock:
        assert echo_through(sock, b"hello") == b"hello"
        big = bytes(range(256)) * 2048  # 512 KiB, several reads and writes
        assert echo_through(sock, big) == big
    assert proxy.connections == 1


def test_cut_drops_open_connections_only(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        assert echo_through(sock, b"before") == b"before"
        proxy.cut()
        assert is_dropped(sock)
    with connect(proxy) as again:
        assert echo_through(again, b"after") == b"after"
    assert proxy.connections == 2


def test_refuse_closes_new_connections_until_accept(proxy: TcpProxy) -> None:
    with connect(proxy) as open_one:
        assert echo_through(open_one, b"x") == b"x"
        proxy.refuse()
        assert is_dropped(open_one)
    with connect(proxy) as refused:
        assert is_dropped(refused)
    assert proxy.connections == 1
    proxy.accept()
    with connect(proxy) as accepted:
        assert echo_through(accepted, b"back") == b"back"
    assert proxy.connections == 2


def test_unreachable_target_closes_the_client(echo_server: tuple[str, int]) -> None:
    with socket.socket() as bound_only:
        bound_only.bind(("127.0.0.1", 0))  # holds the port; without listen() it refuses
        port = bound_only.getsockname()[1]
        with TcpProxy("127.0.0.1", port) as proxy, connect(proxy) as sock:
            assert is_dropped(sock)
            assert proxy.connections == 0


def test_never_listens_on_its_own_target(monkeypatch: pytest.MonkeyPatch) -> None:
    target = socket.create_server(("127.0.0.1", 0))
    port = target.getsockname()[1]
    handed_back = [target]  # the kernel gives the just-freed target port to the proxy first
    real_create_server = socket.create_server

    def create_server(address: tuple[str, int], **kwargs: Any) -> socket.socket:
        return handed_back.pop() if handed_back else real_create_server(address, **kwargs)

    monkeypatch.setattr(socket, "create_server", create_server)
    with TcpProxy("127.0.0.1", port) as proxy:
        assert proxy.port != port
    assert target.fileno() == -1  # the port it stepped over was released


def test_close_stops_listening(echo_server: tuple[str, int]) -> None:
    proxy = TcpProxy(*echo_server)
    sock = connect(proxy)
    assert echo_through(sock, b"x") == b"x"
    proxy.close()
    assert is_dropped(sock)
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT).close()


def test_tcp_proxy_fixture(tcp_proxy, echo_server: tuple[str, int]) -> None:
    proxy = tcp_proxy(*echo_server)
    with connect(proxy) as sock:
        assert echo_through(sock, b"fixture") == b"fixture"


@pytest.mark.slow
def test_idle_connection_stays_open(proxy: TcpProxy) -> None:
    """Broker clients sit idle between heartbeats; the proxy must not time them out."""
    with connect(proxy) as sock:
        assert echo_through(sock, b"a") == b"a"
        time.sleep(6.5)  # longer than the proxy's 5 s connect timeout
        assert echo_through(sock, b"b") == b"b"
