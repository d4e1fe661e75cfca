"""`dispatch` builds each payload once (issue 17): headers, defaults and expiry as before."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from cqrs_core import codec
from cqrs_core import payload as payload_module
from cqrs_core.constants import SignalType
from cqrs_core.messages import Inbound, Outcome, OutcomeKind
from cqrs_core.payload import TransportPayload, set_default_correlation
from cqrs_core.transports.memory import MemoryTransport

UTC = dt.timezone.utc


@pytest.fixture
def calls() -> Iterator[list[tuple[Any, ...]]]:
    """The default correlation provider's calls while the test runs."""
    seen: list[tuple[Any, ...]] = []
    previous = payload_module._default_correlation

    def provider(*args: Any) -> str:
        seen.append(args)
        return "from-provider"

    set_default_correlation(provider)
    try:
        yield seen
    finally:
        set_default_correlation(previous)


def _body(pk: int, **fields: Any) -> bytes:
    values: dict[str, Any] = {
        "signal_type": SignalType.SAVE,
        "cqrs_id": "a",
        "instance_data": {"id": pk},
        "instance_pk": pk,
        "correlation_id": "sent",
        "expires": dt.datetime.now(UTC) + dt.timedelta(hours=1),
    }
    values.update(fields)
    return codec.encode(TransportPayload(**values))


def _dispatch(messages: Sequence[Inbound]) -> list[TransportPayload]:
    seen: list[TransportPayload] = []

    def handler(payloads: Sequence[TransportPayload]) -> list[Outcome]:
        seen.extend(payloads)
        return [Outcome.applied() for _ in payloads]

    transport = MemoryTransport({"transport": "memory", "url": "memory://decoding", "queue": "q"})
    settled = transport.dispatch(handler, messages, cqrs_ids={"a"})
    assert [item.outcome.kind for item in settled] == [OutcomeKind.APPLIED] * len(messages)
    assert [item.payload for item in settled] == seen
    return seen


def test_received_headers_travel_on_with_the_payload() -> None:
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with_headers, without = _dispatch([Inbound(_body(1), headers=headers), Inbound(_body(2))])
    assert with_headers.headers == headers
    assert with_headers.headers is not headers  # a copy: the payload never shares it
    assert without.headers == {}
    assert with_headers.correlation_id == without.correlation_id == "sent"


def test_the_default_correlation_is_asked_once_per_message(calls: list[tuple[Any, ...]]) -> None:
    traced = Inbound(_body(1, correlation_id=None), headers={"traceparent": "00-x-y-01"})
    (received,) = _dispatch([traced])
    assert received.correlation_id == "from-provider"
    assert received.headers == {"traceparent": "00-x-y-01"}
    assert calls == [(SignalType.SAVE, "a", 1, None)]


def test_codec_decode_takes_headers() -> None:
    decoded = codec.decode(_body(3), headers={"tracestate": "k=v"})
    assert decoded.headers == {"tracestate": "k=v"}
    assert codec.decode(_body(3)).headers == {}


def test_expiry_is_judged_for_every_message_of_a_batch() -> None:
    past = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
    transport = MemoryTransport({"transport": "memory", "url": "memory://decoding", "queue": "q"})
    settled = transport.dispatch(
        lambda payloads: [Outcome.applied() for _ in payloads],
        [Inbound(_body(1)), Inbound(_body(2, expires=past)), Inbound(_body(3))],
        cqrs_ids={"a"},
    )
    assert [(item.outcome.kind, item.outcome.reason) for item in settled] == [
        (OutcomeKind.APPLIED, ""),
        (OutcomeKind.DEAD, "expired"),
        (OutcomeKind.APPLIED, ""),
    ]


def test_a_decoded_payload_is_what_the_constructor_builds(calls: list[tuple[Any, ...]]) -> None:
    sent = json.loads(_body(4, previous_data={"name": "old"}, retries=2, meta={"m": 1}))
    calls.clear()
    body = json.dumps({**sent, "correlation_id": None})  # as from a master without one
    decoded = codec.decode(body, queue="q", headers={"traceparent": "t"})
    built = TransportPayload(
        signal_type=SignalType.SAVE,
        cqrs_id="a",
        instance_data={"id": 4},
        instance_pk=4,
        queue="q",
        previous_data={"name": "old"},
        expires=decoded.expires,
        retries=2,
        meta={"m": 1},
        headers={"traceparent": "t"},
    )
    assert decoded == built
    assert vars(decoded) == vars(built)
    assert list(vars(decoded)) == list(vars(built))
    assert decoded.correlation_id == "from-provider"
    assert calls == [(SignalType.SAVE, "a", 4, "q")] * 2  # decoding, then building
    decoded.retries = 3  # still the only field that can be set
    with pytest.raises(AttributeError):
        decoded.cqrs_id = "b"  # type: ignore[misc]


def test_a_subclass_decodes_to_itself() -> None:
    class Tagged(TransportPayload):
        pass

    decoded = Tagged.from_message(json.loads(_body(5)), headers={"tracestate": "k=v"})
    assert type(decoded) is Tagged
    assert decoded.instance_pk == 5
    assert decoded.headers == {"tracestate": "k=v"}
