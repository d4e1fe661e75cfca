"""A loopback TCP proxy for fault tests: put it between a client and its broker.

```python
with TcpProxy("127.0.0.1", 5672) as proxy:
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    ...
    proxy.cut()          # drop every open connection now
    proxy.refuse()       # new connections are closed at once (broker "down")
    proxy.accept()       # back to normal
```
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11


class TcpProxy:
    """Forward a free loopback port to `(host, port)`, with switches to refuse and cut."""

    def __init__(self, host: str, port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.target = (host, port)
        self._server = _listen_elsewhere(listen_host, avoid=self.target)
        self._server.setblocking(False)
        self.host, self.port = self._server.getsockname()[:2]
        self._refusing = False
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._finishing: dict[tuple[socket.socket, socket.socket], bool] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self.connections = 0
        """How many client connections were accepted and forwarded so far."""
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def refuse(self) -> None:
        """Cut open connections and close new ones immediately, as if the broker were down."""
        self._refusing = True
        self.cut()

    def accept(self) -> None:
        """Forward new connections again."""
        self._refusing = False

    def cut(self) -> None:
        """Drop every open connection (both sides see a reset/EOF)."""
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for client, upstream in pairs:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        """Stop the proxy and drop its connections."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.cut()
        with contextlib.suppress(OSError):
            self._server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._server, selectors.EVENT_READ)
        while not self._stop.is_set():
            for _key, _ in selector.select(timeout=0.1):
                try:
                    client, _addr = self._server.accept()
                except OSError:
                    continue
                if self._refusing:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                # The timeout is for connecting only: idle connections (between heartbeats)
                # must stay open, as they would without the proxy.
                upstream.settimeout(None)
                client.setblocking(True)
                self.connections += 1
                with self._lock:
                    self._pairs.add((client, upstream))
                pair = (client, upstream)
                for src, dst in (pair, pair[::-1]):
                    threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()
        selector.close()

    def _pump(
        self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                # The second pump of a pair to finish closes both sockets and forgets the pair.
                last = self._finishing.pop(pair, None) is not None
                if not last:
                    self._finishing[pair] = True
                if last:
                    self._pairs.discard(pair)
            if last:
                for sock in pair:
                    with contextlib.suppress(OSError):
                        sock.close()


def _listen_elsewhere(host: str, *, avoid: tuple[str, int]) -> socket.socket:
    """Listen on a free port of `host` other than `avoid`.

    A target port that was just freed can be handed straight back by the kernel; a proxy
    listening there would forward to itself, connection after connection.
    """
    held: list[socket.socket] = []
    try:
        while True:
            server = socket.create_server((host, 0))
            if server.getsockname()[1] != avoid[1]:  # ports only: `avoid` may be a host name
                return server
            held.append(server)  # keep it bound so the next try gets another port
    finally:
        for server in held:
            server.close()
