"""Helpers shared by the replica tests (payload builders, a memory-transport environment)."""

from __future__ import annotations

import datetime
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cqrs_core.constants import SignalType
from cqrs_core.payload import TransportPayload
from cqrs_core.transports.memory import MemoryBroker, MemoryTransport

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    """A master time `seconds` after T0."""
    return T0 + datetime.timedelta(seconds=seconds)


def data(pk: Any, revision: int, seconds: float, **fields: Any) -> dict[str, Any]:
    """`instance_data` as a master sends it (`cqrs_updated` in the wire's string form)."""
    return {"id": pk, "cqrs_revision": revision, "cqrs_updated": str(at(seconds)), **fields}


def payload(
    cqrs_id: str,
    instance_data: dict[str, Any],
    signal: SignalType = SignalType.SAVE,
    **kwargs: Any,
) -> TransportPayload:
    return TransportPayload(
        signal_type=signal,
        cqrs_id=cqrs_id,
        instance_data=instance_data,
        instance_pk=instance_data.get("id"),
        **kwargs,
    )


@pytest.fixture(name="memory_cqrs")
def memory_cqrs_fixture(settings: Any, unique: Any) -> Iterator[MemoryTransport]:
    """Point the project at a fresh memory broker; yield the replica's consuming transport.

    The replica queue is bound to every replica CQRS_ID first, so what the master publishes
    from now on is kept.
    """
    from dj_cqrs import conf
    from dj_cqrs.consumer import resolve_cqrs_ids

    name = unique("replication")
    settings.CQRS = {
        **settings.CQRS,
        "transport": "memory",
        "url": f"memory://{name}",
        "queue": "replica",
        "replica": {"CQRS_MAX_RETRIES": 5, "CQRS_RETRY_DELAY": 0.05},
    }
    conf.reset_transport()
    transport = MemoryTransport(conf.transport_options())
    transport.declare(resolve_cqrs_ids())
    try:
        yield transport
    finally:
        transport.close()
        conf.reset_transport()
        MemoryBroker.drop(name)


MANAGE = Path(__file__).parent / "cqrs_testproject" / "manage.py"
PROCESS_WAIT = 60.0
"""Upper bound for a process to print a line or stop (a hang guard, not a speed assertion)."""


class ConsumeProcess:
    """A `manage.py cqrs_consume` process whose output lines are collected by a thread."""

    def __init__(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(MANAGE), "cqrs_consume", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_for(self, pattern: str | re.Pattern[str]) -> re.Match[str]:
        """The first new output line matching `pattern`; fails if none comes in time."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + PROCESS_WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            found = regex.search(line)
            if found:
                return found
        raise AssertionError(f"no line matching {regex.pattern!r}; output:\n{self.text}")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(PROCESS_WAIT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
