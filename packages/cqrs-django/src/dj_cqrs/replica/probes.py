"""Container probes of `cqrs_consume`: a liveness file, a readiness file and worker heartbeats.

Liveness answers "is the consumer loop turning?": the file's modification time advances after
every batch and every idle tick (at least once a second while idle), so a probe such as
`find PATH -mmin -1` or `test $(($(date +%s) - $(stat -c %Y PATH))) -lt 60` fails when a
worker hangs. Readiness answers "is it connected and bound?": the file exists only between
the transport's `on_ready` and the start of shutdown (or a lost consumer).

With several worker processes, each worker reports to its supervisor through a `Heartbeat`
(shared memory) instead of touching the files itself: the supervisor touches the liveness file
only when every worker ticked since its previous touch, and keeps the readiness file only
while every worker is ready. One hung or restarting worker thus shows on the probes, which a
file touched by any worker would hide.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("django-cqrs")


def touch(path: str | None) -> None:
    """Create `path` or bump its modification time."""
    if path:
        try:
            Path(path).touch()
        except OSError:
            logger.warning("cannot touch probe file %s", path, exc_info=True)


def remove(path: str | None) -> None:
    """Delete `path` if it exists."""
    if path:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError:
            logger.warning("cannot remove probe file %s", path, exc_info=True)


class Heartbeat:
    """What one worker process shares with its supervisor: a ready flag and a tick counter.

    Build it with the multiprocessing context used to start the worker and pass it as a
    process argument; the worker writes, the supervisor reads (no lock needed: one writer).
    """

    def __init__(self, context: Any) -> None:
        self._ready = context.RawValue("b", 0)
        self._ticks = context.RawValue("Q", 0)

    @property
    def is_ready(self) -> bool:
        return bool(self._ready.value)

    @property
    def ticks(self) -> int:
        return int(self._ticks.value)

    def ready(self, ready: bool = True) -> None:
        self._ready.value = 1 if ready else 0
        if ready:
            self.tick()

    def tick(self) -> None:
        self._ticks.value += 1


class Probes:
    """The probe files and heartbeat of one consumer process (any of them may be None)."""

    def __init__(
        self,
        liveness_file: str | None = None,
        readiness_file: str | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.liveness_file = liveness_file
        self.readiness_file = readiness_file
        self.heartbeat = heartbeat

    def ready(self) -> None:
        touch(self.liveness_file)
        touch(self.readiness_file)
        if self.heartbeat is not None:
            self.heartbeat.ready()

    def not_ready(self) -> None:
        remove(self.readiness_file)
        if self.heartbeat is not None:
            self.heartbeat.ready(False)

    def tick(self) -> None:
        touch(self.liveness_file)
        if self.heartbeat is not None:
            self.heartbeat.tick()
