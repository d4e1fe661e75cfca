"""How often and how late a failed message is retried before it becomes a dead letter."""

from __future__ import annotations

import dataclasses

from cqrs_core.constants import DEFAULT_MAX_RETRIES, DEFAULT_RETRY_DELAY
from cqrs_core.messages import Outcome
from cqrs_core.payload import TransportPayload


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry up to `max_retries` times (None: forever, 0: never), `delay` seconds apart.

    `backoff` multiplies the delay on each further retry (1.0 keeps it fixed, as django-cqrs),
    capped at `max_delay`.
    """

    max_retries: int | None = DEFAULT_MAX_RETRIES
    delay: float = DEFAULT_RETRY_DELAY
    backoff: float = 1.0
    max_delay: float = 3600.0

    def should_retry(self, current_retry: int) -> bool:
        """True while a message that has been retried `current_retry` times may try again."""
        return self.max_retries is None or current_retry < self.max_retries

    def delay_for(self, current_retry: int) -> float:
        """Seconds to wait before the next attempt."""
        return min(self.delay * self.backoff**current_retry, self.max_delay)

    def on_failure(self, payload: TransportPayload, reason: str) -> Outcome:
        """Retry `payload` after the policy's delay, or dead-letter it once retries run out."""
        if self.should_retry(payload.retries):
            return Outcome.retry(self.delay_for(payload.retries), reason)
        return Outcome.dead(f"retries exhausted ({payload.retries}): {reason}")

    def resolve(self, payload: TransportPayload, outcome: Outcome) -> Outcome:
        """Fill in a RETRY without delay from the policy (dead-lettering past the limit)."""
        if outcome.delay is None and outcome.kind.value == "retry":
            return self.on_failure(payload, outcome.reason or "handler failed")
        return outcome
