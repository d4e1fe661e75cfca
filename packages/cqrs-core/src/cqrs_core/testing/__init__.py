"""Test helpers for transports and for users' own tests (importing this needs no pytest).

- `cqrs_core.testing.suite`: the conformance suite every transport subclasses (needs pytest).
- `cqrs_core.testing.proxy`: a loopback TCP proxy that can refuse and cut connections.
- `consume_until`, `Recorder`: drive a transport's blocking `consume` from a test.
"""

from __future__ import annotations

from cqrs_core.testing._consuming import Recorder, consume_until

__all__ = ["Recorder", "consume_until"]
