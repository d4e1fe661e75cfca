"""The answers of `/livez` and `/readyz`, fed by the same signals as the probe files.

Ready: the consumer is connected and bound (with -w N: every worker), as the readiness file.
Alive: the loop ticked (after a batch, at least once a second while idle) within
`LIVE_TIMEOUT` seconds, as the liveness file's modification time.
"""

from __future__ import annotations

import time
from typing import Any

LIVE_TIMEOUT = 60.0
"""Seconds without a tick after which `/livez` answers 503."""


class Health:
    """Ready flag and time of the last tick of this process (thread-safe enough: plain stores)."""

    def __init__(self) -> None:
        self.is_ready = False
        self.last_tick = time.monotonic()

    def set_ready(self, ready: bool) -> None:
        self.is_ready = ready
        if ready:
            self.tick()

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def alive(self, timeout: float = LIVE_TIMEOUT) -> bool:
        return time.monotonic() - self.last_tick < timeout


HEALTH = Health()


def set_ready(ready: bool) -> None:
    HEALTH.set_ready(ready)


def tick() -> None:
    HEALTH.tick()


def watch(probes: Any) -> Any:
    """Make `probes` (a `replica.probes.Probes`) report to `HEALTH` too; returns it."""
    ready, not_ready, ticked = probes.ready, probes.not_ready, probes.tick

    def on_ready() -> None:
        ready()
        HEALTH.set_ready(True)

    def on_not_ready() -> None:
        not_ready()
        HEALTH.set_ready(False)

    def on_tick() -> None:
        ticked()
        HEALTH.tick()

    probes.ready, probes.not_ready, probes.tick = on_ready, on_not_ready, on_tick
    return probes
