"""Drive a transport's blocking `consume` from a test: record, wait for a condition, crash.

Public so transport authors reuse them (`from cqrs_core.testing.consuming import ...`); the
conformance suite is built on them.
"""

from __future__ import annotations

import gc
import json
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from cqrs_core.messages import Outcome
from cqrs_core.payload import TransportPayload
from cqrs_core.transports.base import BaseTransport

Decide = Callable[[TransportPayload, int], Outcome]
"""Given a payload and how many times it has been seen, return the outcome."""


class Recorder:
    """A batch handler that records what it was given and answers with `decide`."""

    def __init__(self, decide: Decide | None = None) -> None:
        self.decide = decide or (lambda payload, seen: Outcome.applied())
        self.payloads: list[TransportPayload] = []
        self.batches: list[int] = []
        self.seen: dict[tuple[str, object], int] = {}
        self.times: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, payloads: Sequence[TransportPayload]) -> list[Outcome]:
        outcomes = []
        with self._lock:
            self.batches.append(len(payloads))
            for payload in payloads:
                key = (payload.cqrs_id, payload.instance_pk)
                self.seen[key] = self.seen.get(key, 0) + 1
                self.payloads.append(payload)
                self.times.append(time.monotonic())
                outcomes.append(self.decide(payload, self.seen[key]))
        return outcomes

    def count(self) -> int:
        with self._lock:
            return len(self.payloads)

    def pks(self) -> list[Any]:
        with self._lock:
            return [payload.instance_pk for payload in self.payloads]


def consume_until(
    transport: BaseTransport,
    handler: Callable[[Sequence[TransportPayload]], Sequence[Outcome]],
    until: Callable[[], bool],
    *,
    cqrs_ids: Collection[str],
    timeout: float = 30.0,
    settle: float = 0.0,
) -> None:
    """Consume until `until()` is true, then wait `settle` seconds more and stop.

    Raises:
        AssertionError: `until()` did not become true within `timeout` seconds.
        Exception: whatever `consume` raised.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            transport.consume(handler, cqrs_ids=cqrs_ids)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the test's thread)
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"consume-{transport.name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    met = False
    try:
        while not (met := until()):
            if errors or not thread.is_alive():
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            time.sleep(0.02)
        if settle and not errors:
            time.sleep(settle)
    finally:
        transport.stop()
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    if thread.is_alive():
        raise AssertionError(f"{transport.name} consume() did not return within 30 s of stop()")
    # Judged when the loop ended, not after stop(): other consumers of the same broker may
    # have changed what `until` sees in the meantime.
    if not met:
        raise AssertionError("consume() returned before the condition was met")


class _Crash(BaseException):
    """Unwinds an in-process consumer as if its process had died (no handler catches it)."""


def crash_in_process(
    make: Callable[[], BaseTransport], *, cqrs_ids: Collection[str], timeout: float = 30.0
) -> None:
    """Simulate a consumer crash for an in-process broker (the memory transport, test doubles).

    A transport from `make()` consumes until its handler holds a batch; the consume thread then
    dies mid-batch and the transport is dropped without `close()` and garbage collected. What it
    took must come back to the next consumer. Brokers in another process are tested for real
    with `crash_in_subprocess`.
    """
    taken = threading.Event()
    done = threading.Event()

    def handler(payloads: Sequence[TransportPayload]) -> Sequence[Outcome]:
        taken.set()
        raise _Crash

    def run(transport: BaseTransport) -> None:
        try:
            transport.consume(handler, cqrs_ids=cqrs_ids)
        except BaseException:  # noqa: BLE001, S110 (the crash itself: nothing settles it)
            pass
        finally:
            done.set()

    transport = make()
    thread = threading.Thread(target=run, args=(transport,), name="crashing-consumer", daemon=True)
    del transport  # only the thread holds it now
    thread.start()
    if not taken.wait(timeout):
        raise AssertionError(f"the crashing consumer took no message within {timeout} s")
    if not done.wait(timeout):
        raise AssertionError("the crashing consumer's thread did not end")
    thread.join(timeout)
    del thread
    gc.collect()


def crash_in_subprocess(
    transport_class: type[BaseTransport],
    options: Mapping[str, Any],
    *,
    cqrs_ids: Collection[str],
    timeout: float = 60.0,
) -> None:
    """Start a consumer in a child process and SIGKILL it once its handler holds a batch.

    The child imports `transport_class` by its module and name and builds it from `options`,
    which must therefore be JSON-serializable. Nothing is settled and nothing is closed: the
    broker itself must notice the dead consumer and deliver the batch again.
    """
    target = f"{transport_class.__module__}:{transport_class.__qualname__}"
    try:
        spec = json.dumps({"options": dict(options), "cqrs_ids": sorted(cqrs_ids)})
    except TypeError as exc:
        raise TypeError(
            f"crash_in_subprocess needs JSON-serializable transport options ({exc}); override "
            "the suite's `crash_consumer` fixture to crash your consumer another way"
        ) from None
    # stderr goes to a file: a chatty client library must not block on a full pipe.
    errors = tempfile.TemporaryFile()
    child = subprocess.Popen(
        [sys.executable, "-m", "cqrs_core.testing._crash_child", target],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(spec.encode())
        child.stdin.close()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.startswith(b"taken"):
            left = deadline - time.monotonic()
            if left <= 0 or child.poll() is not None:
                errors.seek(0)
                err = errors.read().decode(errors="replace")[-2000:]
                raise AssertionError(
                    f"the consumer subprocess took no message within {timeout} s; its stderr:\n"
                    f"{err}"
                )
            ready, _, _ = select.select([child.stdout], [], [], min(left, 0.5))
            if ready:
                line = child.stdout.readline()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        errors.close()
