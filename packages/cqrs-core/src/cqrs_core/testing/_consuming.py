"""Run a transport's blocking `consume` in a thread until a condition holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
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
