"""Old private home of `cqrs_core.testing.consuming`, kept so existing imports keep working."""

from __future__ import annotations

from cqrs_core.testing.consuming import Decide, Recorder, consume_until

__all__ = ["Decide", "Recorder", "consume_until"]
