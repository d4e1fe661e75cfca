"""BaseTransport's shared logic (dispatch, retries, dead letters, lifecycle) on a tiny transport."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from cqrs_core import codec
from cqrs_core.constants import SignalType
from cqrs_core.exceptions import TransportClosed
from cqrs_core.messages import (
    Handler,
    Inbound,
    Outcome,
    OutcomeKind,
    Outgoing,
    Settled,
    per_message,
)
from cqrs_core.payload import TransportPayload
from cqrs_core.transports.base import BaseTransport

UTC = dt.timezone.utc


class Tiny(BaseTransport):
    """Records what it publishes; consuming is driven by the tests through `dispatch`."""

    name = "tiny"
    api_version = 1

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.published: list[Outgoing] = []
        self.close_calls = 0

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        self.published.extend(messages)

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        self.close_calls += 1


class Spy:
    """A handler that records its batches and answers with `answer(payloads)`."""

    def __init__(self, answer: Callable[[Sequence[TransportPayload]], Any] | None = None) -> None:
        self.answer = answer or (lambda payloads: [Outcome.applied() for _ in payloads])
        self.batches: list[list[TransportPayload]] = []

    def __call__(self, payloads: Sequence[TransportPayload]) -> Any:
        self.batches.append(list(payloads))
        return self.answer(payloads)


def payload(pk: int = 1, cqrs_id: str = "a", **fields: Any) -> TransportPayload:
    values: dict[str, Any] = {
        "signal_type": SignalType.SAVE,
        "cqrs_id": cqrs_id,
        "instance_data": {"id": pk},
        "instance_pk": pk,
        "expires": dt.datetime.now(UTC) + dt.timedelta(hours=1),
    }
    values.update(fields)
    return TransportPayload(**values)


def inbound(p: TransportPayload, queue: str | None = None) -> Inbound:
    return Inbound(codec.encode(p), queue=queue, token=f"tag-{p.instance_pk}")


@pytest.fixture
def transport() -> Tiny:
    return Tiny({"queue": "mine", "replica": {"CQRS_MAX_RETRIES": 2, "CQRS_RETRY_DELAY": 0.25}})


def kinds(settled: list[Settled]) -> list[OutcomeKind]:
    return [item.outcome.kind for item in settled]


def test_applied_batch_keeps_order_and_tokens(transport: Tiny) -> None:
    spy = Spy()
    messages = [inbound(payload(pk)) for pk in (1, 2, 3)]
    settled = transport.dispatch(spy, messages, cqrs_ids={"a"})
    assert kinds(settled) == [OutcomeKind.APPLIED] * 3
    assert [item.message for item in settled] == messages
    assert [[p.instance_pk for p in batch] for batch in spy.batches] == [[1, 2, 3]]


def test_malformed_is_dead_with_reason(transport: Tiny) -> None:
    spy = Spy()
    bad = [
        Inbound(b"not json"),
        Inbound(b'{"signal_type":"SAVE"}'),
        Inbound(b'{"signal_type":"SAVE","cqrs_id":"a","instance_data":{},"retries":-1}'),
        Inbound(b"[" * 100_000),  # deeper than the parser's recursion limit
    ]
    settled = transport.dispatch(spy, bad, cqrs_ids={"a"})
    assert kinds(settled) == [OutcomeKind.DEAD] * 4
    assert all(item.payload is None for item in settled)
    reasons = [item.outcome.reason for item in settled]
    assert reasons[0].startswith("malformed message: body is not valid JSON")
    assert reasons[1] == "malformed message: missing key(s): cqrs_id, instance_data"
    assert "retries must be a non-negative integer" in reasons[2]
    assert reasons[3] == "malformed message: body is JSON nested too deeply to parse"
    assert spy.batches == []


def test_expired_is_dead_without_calling_the_handler(transport: Tiny) -> None:
    spy = Spy()
    old = payload(1, expires=dt.datetime.now(UTC) - dt.timedelta(seconds=1))
    settled = transport.dispatch(spy, [inbound(old)], cqrs_ids=None)
    assert [(item.outcome.kind, item.outcome.reason) for item in settled] == [
        (OutcomeKind.DEAD, "expired")
    ]
    assert settled[0].payload is not None and settled[0].payload.instance_pk == 1
    assert spy.batches == []


def test_legacy_message_without_expires_is_applied(transport: Tiny) -> None:
    body = json.dumps({"signal_type": "SAVE", "cqrs_id": "a", "instance_data": {"id": 4}})
    settled = transport.dispatch(Spy(), [Inbound(body.encode())], cqrs_ids={"a"})
    assert kinds(settled) == [OutcomeKind.APPLIED]
    assert settled[0].payload is not None and settled[0].payload.expires is not None


def test_directed_message_for_another_queue_is_skipped(transport: Tiny) -> None:
    spy = Spy()
    sync = payload(1, signal_type=SignalType.SYNC)
    # A `queue` key in the body (sent by some producers) is honoured like the routing key.
    with_key = {**payload(2).to_dict(), "queue": "theirs"}
    settled = transport.dispatch(
        spy,
        [
            inbound(sync, queue="theirs"),
            Inbound(codec.dumps(with_key).encode()),
            inbound(sync, "mine"),
        ],
        cqrs_ids={"a"},
    )
    assert kinds(settled) == [OutcomeKind.SKIPPED, OutcomeKind.SKIPPED, OutcomeKind.APPLIED]
    assert settled[0].outcome.reason == "aimed at theirs"
    assert settled[0].outcome.acks
    assert [[p.instance_pk for p in batch] for batch in spy.batches] == [[1]]


def test_filtered_cqrs_id_is_released(transport: Tiny) -> None:
    spy = Spy()
    settled = transport.dispatch(
        spy, [inbound(payload(1, "a")), inbound(payload(2, "b"))], cqrs_ids={"a"}
    )
    assert kinds(settled) == [OutcomeKind.APPLIED, OutcomeKind.RELEASE]
    assert not settled[1].outcome.acks
    everything = transport.dispatch(Spy(), [inbound(payload(2, "b"))], cqrs_ids=None)
    assert kinds(everything) == [OutcomeKind.APPLIED]


def test_mixed_batch_only_sends_valid_payloads_to_the_handler(transport: Tiny) -> None:
    spy = Spy(lambda ps: [Outcome.applied(), Outcome.dead("no")])
    messages = [
        inbound(payload(1)),
        Inbound(b"[]"),
        inbound(payload(2, "other")),
        inbound(payload(3)),
    ]
    settled = transport.dispatch(spy, messages, cqrs_ids={"a"})
    assert kinds(settled) == [
        OutcomeKind.APPLIED,
        OutcomeKind.DEAD,
        OutcomeKind.RELEASE,
        OutcomeKind.DEAD,
    ]
    assert [item.message for item in settled] == messages
    assert settled[3].outcome.reason == "no"
    assert [[p.instance_pk for p in batch] for batch in spy.batches] == [[1, 3]]


def test_empty_batch(transport: Tiny) -> None:
    spy = Spy()
    assert transport.dispatch(spy, [], cqrs_ids=None) == []
    assert spy.batches == []


def test_handler_raising_retries_by_policy_then_dead(
    transport: Tiny, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(payloads: Any) -> Any:
        raise RuntimeError("database is down")

    with caplog.at_level(logging.ERROR, logger="django-cqrs"):
        first = transport.dispatch(boom, [inbound(payload(1)), inbound(payload(2))], cqrs_ids=None)
    assert [item.outcome for item in first] == [
        Outcome.retry(0.25, "RuntimeError: database is down")
    ] * 2
    assert "CQRS handler failed on a batch of 2 message(s)" in caplog.text
    # Follow the message through its retries, as a transport republishes it.
    retries_seen = []
    message = inbound(payload(1))
    while True:
        (item,) = transport.dispatch(boom, [message], cqrs_ids=None)
        assert item.payload is not None
        retries_seen.append(item.payload.retries)
        if item.outcome.kind is not OutcomeKind.RETRY:
            break
        message = Inbound(transport.retry_message(item).body, queue="mine")
    assert retries_seen == [0, 1, 2]
    assert item.outcome.kind is OutcomeKind.DEAD
    assert item.outcome.reason == "retries exhausted (2): RuntimeError: database is down"


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (lambda ps: [Outcome.applied()], "handler returned 1 outcomes for 2 payloads"),
        (lambda ps: [Outcome.applied()] * 3, "handler returned 3 outcomes for 2 payloads"),
        (lambda ps: None, "TypeError"),
        (lambda ps: [True, True], "handler returned True instead of an Outcome"),
    ],
)
def test_handler_returning_nonsense_is_a_failure(
    transport: Tiny, answer: Callable[[Any], Any], words: str
) -> None:
    settled = transport.dispatch(
        Spy(answer), [inbound(payload(1)), inbound(payload(2))], cqrs_ids=None
    )
    assert kinds(settled) == [OutcomeKind.RETRY] * 2
    assert all(item.outcome.delay == 0.25 for item in settled)
    assert all(words in item.outcome.reason for item in settled)


def test_retry_without_delay_is_resolved_by_policy(transport: Tiny) -> None:
    answer = Spy(lambda ps: [Outcome.retry(reason="later"), Outcome.retry(9.0, "mine")])
    settled = transport.dispatch(answer, [inbound(payload(1)), inbound(payload(2))], cqrs_ids=None)
    assert [item.outcome for item in settled] == [
        Outcome.retry(0.25, "later"),
        Outcome.retry(9.0, "mine"),
    ]
    exhausted = transport.dispatch(
        Spy(lambda ps: [Outcome.retry()]), [inbound(payload(1, retries=2))], cqrs_ids=None
    )
    assert exhausted[0].outcome == Outcome.dead("retries exhausted (2): handler failed")


def test_per_message_adapter(transport: Tiny) -> None:
    def apply(p: TransportPayload) -> object:
        if p.instance_pk == 2:
            raise ValueError("bad row")
        return p.instance_pk != 3

    settled = transport.dispatch(
        per_message(apply), [inbound(payload(pk)) for pk in (1, 2, 3)], cqrs_ids=None
    )
    assert [item.outcome for item in settled] == [
        Outcome.applied(),
        Outcome.retry(0.25, "ValueError: bad row"),
        Outcome.retry(0.25, "handler failed"),
    ]


def test_retry_message_is_aimed_at_our_queue_with_one_more_retry(transport: Tiny) -> None:
    sent = payload(1, retries=1, correlation_id="c", meta={"m": 1})
    (item,) = transport.dispatch(
        Spy(lambda ps: [Outcome.retry(1.0, "x" * 2000)]), [inbound(sent)], cqrs_ids=None
    )
    retry = transport.retry_message(item)
    assert retry.queue == "mine" and retry.cqrs_id == "a"
    assert retry.body == codec.encode(sent.retried())
    assert retry.payload is not None and retry.payload.retries == 2
    assert retry.headers == {"x-cqrs-retry-reason": "x" * 1000}


def test_dead_letter_message_keeps_the_body(transport: Tiny) -> None:
    (malformed,) = transport.dispatch(Spy(), [Inbound(b"oops")], cqrs_ids=None)
    dead = transport.dead_letter_message(malformed)
    assert (dead.body, dead.cqrs_id, dead.queue, dead.payload) == (
        b"oops",
        "unknown",
        "dead_letter_mine",
        None,
    )
    assert dead.headers["x-cqrs-dead-reason"].startswith("malformed message")
    old = payload(1, expires=dt.datetime.now(UTC) - dt.timedelta(seconds=1))
    (expired,) = transport.dispatch(Spy(), [inbound(old)], cqrs_ids=None)
    letter = transport.dead_letter_message(expired)
    assert (letter.body, letter.cqrs_id) == (codec.encode(old), "a")
    custom = Tiny({"queue": "mine", "replica": {"dead_letter_queue": "graveyard"}})
    assert custom.dead_letter_message(expired).queue == "graveyard"


def test_produce_encodes_and_publishes() -> None:
    transport = Tiny()
    first, second = payload(1), payload(2, signal_type=SignalType.SYNC, queue="billing")
    transport.produce(first)
    transport.produce_many(iter([second]))
    assert [(m.body, m.cqrs_id, m.queue, m.payload) for m in transport.published] == [
        (codec.encode(first), "a", None, first),
        (codec.encode(second), "a", "billing", second),
    ]


def test_close_is_idempotent_and_blocks_producing() -> None:
    with Tiny() as transport:
        assert not transport.closed and not transport.stopping
    assert transport.closed and transport.stopping
    transport.close()
    assert transport.close_calls == 1
    with pytest.raises(TransportClosed, match="the 'tiny' transport is closed"):
        transport.produce(payload())
    assert transport.published == []


def test_stop_sets_stopping() -> None:
    transport = Tiny()
    transport.stop()
    assert transport.stopping and not transport.closed


def test_dead_letter_operations_are_optional() -> None:
    transport = Tiny({"queue": "mine"})
    for operation in (
        transport.dead_letters,
        transport.retry_dead_letters,
        transport.purge_dead_letters,
    ):
        with pytest.raises(NotImplementedError, match="'tiny' transport does not keep dead"):
            operation()
    transport.declare(["a"])  # the default declare does nothing and does not fail


def test_bad_options_fail_at_construction() -> None:
    from cqrs_core.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="CQRS_RETRY_DELAY"):
        Tiny({"replica": {"CQRS_RETRY_DELAY": "soon"}})
