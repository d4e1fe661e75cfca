"""A bound on how long a worker keeps giving back messages that no worker takes.

A worker started with `cqrs_consume --cqrs-id` releases messages of the service's other models
for the workers that consume them. If none does (every such worker was started with the same
`--cqrs-id`), the messages would circulate forever and delay the others. Each worker therefore
counts, in memory, how often it released each message; once one has been released
`RELEASE_LIMIT` times over at least `RELEASE_WINDOW` seconds, it is dead-lettered with the
reason. Both bounds must hold, so a sibling worker that restarts for a while (a deploy) does
not lose its messages to the dead letters.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from typing import Any

from cqrs_core.messages import Outcome, OutcomeKind
from cqrs_core.payload import TransportPayload

RELEASE_LIMIT = 100
"""Releases of one message by one worker before it may be dead-lettered."""
RELEASE_WINDOW = 600.0
"""Seconds since this worker first released the message before it may be dead-lettered."""
REMEMBERED = 100_000
"""Most messages counted at once (the least recently released are forgotten)."""


def _identity(payload: TransportPayload) -> tuple[Any, ...]:
    expires = payload.expires.isoformat() if payload.expires is not None else None
    revision = payload.instance_data.get("cqrs_revision")
    return (
        payload.cqrs_id,
        str(payload.instance_pk),
        str(revision),
        payload.signal_type.value,
        payload.retries,
        str(payload.correlation_id),
        expires,
    )


class ReleaseLedger:
    """Counts the releases of a handler and turns the endless ones into dead letters."""

    def __init__(self, consumed: Collection[str]) -> None:
        self.consumed = sorted(consumed)
        self.seen: OrderedDict[tuple[Any, ...], tuple[int, float]] = OrderedDict()

    def bound(
        self, payloads: Sequence[TransportPayload], outcomes: Sequence[Outcome]
    ) -> list[Outcome]:
        """`outcomes`, with a RELEASE past both bounds replaced by DEAD."""
        now = time.monotonic()
        bounded = list(outcomes)
        for index, (payload, outcome) in enumerate(zip(payloads, outcomes, strict=True)):
            if outcome.kind is not OutcomeKind.RELEASE:
                continue
            key = _identity(payload)
            count, first = self.seen.pop(key, (0, now))
            count += 1
            if count >= RELEASE_LIMIT and now - first >= RELEASE_WINDOW:
                bounded[index] = Outcome.dead(self.reason(payload.cqrs_id, count, now - first))
                continue
            self.seen[key] = (count, first)
            if len(self.seen) > REMEMBERED:
                self.seen.popitem(last=False)
        return bounded

    def reason(self, cqrs_id: str, count: int, seconds: float) -> str:
        return (
            f"no worker of this service takes CQRS_ID {cqrs_id!r}: released {count} times in "
            f"{seconds:.0f} s by a worker started with --cqrs-id {' '.join(self.consumed)}; "
            f"start a worker for {cqrs_id!r}, then run `cqrs_dead_letters retry`"
        )
