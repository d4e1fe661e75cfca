"""RetryPolicy: how many retries, how late, and when a message becomes a dead letter."""

from __future__ import annotations

import pytest

from cqrs_core.constants import DEFAULT_MAX_RETRIES, DEFAULT_RETRY_DELAY, SignalType
from cqrs_core.messages import Outcome, OutcomeKind
from cqrs_core.payload import TransportPayload
from cqrs_core.retry import RetryPolicy


def payload(retries: int) -> TransportPayload:
    return TransportPayload(
        signal_type=SignalType.SAVE,
        cqrs_id="x",
        instance_data={"id": 1},
        instance_pk=1,
        retries=retries,
    )


def test_defaults_are_django_cqrs_ones() -> None:
    policy = RetryPolicy()
    assert (
        (policy.max_retries, policy.delay) == (DEFAULT_MAX_RETRIES, DEFAULT_RETRY_DELAY) == (30, 2)
    )
    assert [policy.delay_for(n) for n in (0, 1, 10)] == [2, 2, 2]


@pytest.mark.parametrize(
    ("max_retries", "allowed", "refused"),
    [(3, [0, 1, 2], [3, 4]), (0, [], [0, 1]), (None, [0, 1, 10**6], [])],
)
def test_should_retry(max_retries: int | None, allowed: list[int], refused: list[int]) -> None:
    policy = RetryPolicy(max_retries=max_retries)
    assert all(policy.should_retry(n) for n in allowed)
    assert not any(policy.should_retry(n) for n in refused)


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(delay=1.5, backoff=2.0, max_delay=10.0)
    assert [policy.delay_for(n) for n in range(5)] == [1.5, 3.0, 6.0, 10.0, 10.0]


def test_on_failure_retries_then_gives_up() -> None:
    policy = RetryPolicy(max_retries=2, delay=0.5)
    assert policy.on_failure(payload(0), "boom") == Outcome.retry(0.5, "boom")
    assert policy.on_failure(payload(1), "boom") == Outcome.retry(0.5, "boom")
    dead = policy.on_failure(payload(2), "boom")
    assert dead.kind is OutcomeKind.DEAD
    assert dead.reason == "retries exhausted (2): boom"


def test_resolve_fills_in_a_retry_without_delay() -> None:
    policy = RetryPolicy(max_retries=1, delay=3)
    resolved = policy.resolve(payload(0), Outcome.retry(reason="db down"))
    assert resolved == Outcome(OutcomeKind.RETRY, delay=3, reason="db down")
    assert policy.resolve(payload(0), Outcome.retry()).reason == "handler failed"
    late = policy.resolve(payload(1), Outcome.retry(reason="db down"))
    assert (late.kind, late.reason) == (OutcomeKind.DEAD, "retries exhausted (1): db down")


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome.retry(7.0, "mine"),
        Outcome.applied(),
        Outcome.skipped("x"),
        Outcome.dead("no"),
        Outcome.release(),
    ],
)
def test_resolve_keeps_decided_outcomes(outcome: Outcome) -> None:
    assert RetryPolicy(max_retries=0).resolve(payload(5), outcome) is outcome


def test_outcome_helpers() -> None:
    assert Outcome.applied().acks and Outcome.skipped().acks
    assert not any(o.acks for o in (Outcome.retry(), Outcome.dead("x"), Outcome.release()))
    assert Outcome.retry().delay is None
    assert Outcome.dead("why").reason == "why"
