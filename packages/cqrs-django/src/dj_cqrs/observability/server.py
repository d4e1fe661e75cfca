"""The HTTP endpoint of `cqrs_consume` and `cqrs_relay`: `/metrics`, `/livez`, `/readyz`.

With `cqrs_consume -w N` (or `--reload`) the workers are separate processes: the supervisor
gives them a fresh `PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode, chosen
because it needs no traffic between processes) and serves the sum of their files, so one
scrape sees every worker. The folder is deleted when the supervisor exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dj_cqrs.observability import health, metrics

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

DEFAULT_ADDR = "127.0.0.1"


def endpoint(options: dict[str, Any]) -> tuple[str, int] | None:
    """(addr, port) from `--metrics-port` or `CQRS['metrics']`; None when metrics are off."""
    from dj_cqrs.conf import cqrs_settings

    section = cqrs_settings().get("metrics") or {}
    if not isinstance(section, dict):
        raise ValueError(
            "CQRS['metrics'] must be a dict such as {'port': 9100, 'addr': '127.0.0.1'}."
        )
    port = options.get("metrics_port")
    if port is None:
        port = section.get("port")
    if port is None:
        return None
    try:
        number = int(port)
    except (TypeError, ValueError):
        number = -1
    if not 0 <= number <= 65535:
        raise ValueError(f"CQRS['metrics']['port'] must be a port number, got {port!r}.")
    return str(section.get("addr") or DEFAULT_ADDR), number


class Server:
    """A small threaded HTTP server in a daemon thread."""

    def __init__(self, addr: str, port: int, registry: Any) -> None:
        # Imported here: a process that serves no metrics (the usual consumer) never needs it.
        from http.server import ThreadingHTTPServer

        self.registry = registry
        self.cleanups: list[Callable[[], object]] = []
        self.httpd = ThreadingHTTPServer((addr, port), _handler(registry))
        self.httpd.daemon_threads = True
        host, self.port = self.httpd.server_address[:2]
        self.addr = host.decode() if isinstance(host, bytes) else host  # typeshed: str | bytes
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="cqrs-metrics", daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        for cleanup in self.cleanups:
            cleanup()


def _handler(registry: Any) -> type[BaseHTTPRequestHandler]:
    from http.server import BaseHTTPRequestHandler

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/livez":
                alive = health.HEALTH.alive()
                self._answer(200 if alive else 503, b"ok\n" if alive else b"stalled\n")
            elif path == "/readyz":
                ready = health.HEALTH.is_ready
                self._answer(200 if ready else 503, b"ok\n" if ready else b"not ready\n")
            else:
                self._answer(404, b"try /metrics, /livez or /readyz\n")

        def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # one line per scrape would drown the consumer's output

    return Handler


@contextlib.contextmanager
def _as_command_error() -> Iterator[None]:
    from django.core.management.base import CommandError

    try:
        yield
    except (ImportError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc


def _announce(server: Server | None, command: str, out: Any) -> Server | None:
    if server is not None and out is not None:
        out.write(f"{command}: metrics and health on {server.url} (/metrics, /livez, /readyz)\n")
        out.flush()
    return server


def serve_consumer(options: dict[str, Any], *, supervised: bool, out: Any = None) -> Server | None:
    """Start the endpoint of `cqrs_consume` if configured (before any worker starts).

    Raises:
        CommandError: a bad setting, a busy port, or prometheus_client missing.
    """
    with _as_command_error():
        return _announce(_serve_consumer(options, supervised), "cqrs_consume", out)


def _serve_consumer(options: dict[str, Any], supervised: bool) -> Server | None:
    where = endpoint(options)
    if where is None:
        return None
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(metrics.missing_client_message()) from exc
    if not supervised:
        metrics.enable()
        return _start(where, prometheus_client.REGISTRY)
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    folder = tempfile.mkdtemp(prefix="cqrs-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # inherited by the spawned workers
    os.environ[metrics.WORKER_ENV] = "1"
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=folder)
    try:
        server = _start(where, registry)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return server


def serve_relay(options: dict[str, Any], using: str, *, out: Any = None) -> Server | None:
    """Start the endpoint of `cqrs_relay` if configured, with the outbox backlog collector.

    Raises:
        CommandError: a bad setting, a busy port, or prometheus_client missing.
    """
    with _as_command_error():
        return _announce(_serve_relay(options, using), "cqrs_relay", out)


def _serve_relay(options: dict[str, Any], using: str) -> Server | None:
    where = endpoint(options)
    if where is None:
        return None
    metrics.enable()
    from prometheus_client import REGISTRY

    from dj_cqrs.observability.backlog import OutboxBacklog

    backlog = OutboxBacklog(using)
    REGISTRY.register(backlog)
    try:
        server = _start(where, REGISTRY)
    except BaseException:
        REGISTRY.unregister(backlog)
        raise
    server.cleanups.append(lambda: REGISTRY.unregister(backlog))
    health.set_ready(True)  # the relay polls the database and reconnects by itself
    return server


def worker_exited(pid: int | None) -> None:
    """A supervised worker is gone: drop its live gauges (in-flight) from the sum."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if pid is None or not folder or not os.environ.get(metrics.WORKER_ENV):
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, folder)


def _start(where: tuple[str, int], registry: Any) -> Server:
    addr, port = where
    try:
        return Server(addr, port, registry)
    except OSError as exc:
        raise OSError(
            f"Cannot serve CQRS metrics on {addr}:{port} ({exc}); choose another port with "
            "--metrics-port or CQRS['metrics']['port']."
        ) from exc
