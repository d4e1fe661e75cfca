"""Test helpers for transports and for users' own tests (importing this needs no pytest).

- `cqrs_core.testing.suite`: the conformance suite every transport subclasses (needs pytest).
- `cqrs_core.testing.proxy`: a loopback TCP proxy that can refuse and cut connections.
- `cqrs_core.testing.consuming`: `Recorder`, `consume_until` (drive a transport's blocking
  `consume` from a test), `crash_in_process` / `crash_in_subprocess` (kill a consumer mid-batch).
"""

from __future__ import annotations

from cqrs_core.testing.consuming import (
    Recorder,
    consume_until,
    crash_in_process,
    crash_in_subprocess,
)

__all__ = ["Recorder", "consume_until", "crash_in_process", "crash_in_subprocess"]
