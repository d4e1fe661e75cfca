"""What the base class does for every transport: consume's set-up, api_version, wire rules."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import pytest

from cqrs_core import wire
from cqrs_core.exceptions import ConfigurationError, TransportClosed, TransportLoadError
from cqrs_core.messages import Handler, Inbound, Outcome, Outgoing, Settled
from cqrs_core.testing.suite import make_payload
from cqrs_core.transports import get_transport_class
from cqrs_core.transports.base import BaseTransport
from cqrs_core.transports.memory import MemoryTransport


class Hooked(BaseTransport):
    """Records the arguments `_consume` receives."""

    name = "hooked"
    api_version = 1

    def __init__(self, options: object = None) -> None:
        super().__init__(options)  # type: ignore[arg-type]
        self.calls: list[tuple[frozenset[str], bool]] = []

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        pass

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        self.calls.append((cqrs_ids, self.stopping))

    def _close(self) -> None:
        pass


def test_consume_does_the_set_up_then_calls_the_hook() -> None:
    """A stop() left over from a previous run is forgotten; ids arrive as a frozenset."""
    transport = Hooked({"queue": "replica"})
    transport.stop()
    transport.consume(lambda payloads: [], cqrs_ids=["a", "b"])
    assert transport.calls == [(frozenset({"a", "b"}), False)]


def test_consume_needs_a_queue_and_an_open_transport() -> None:
    with pytest.raises(ConfigurationError, match="queue"):
        Hooked({}).consume(lambda payloads: [], cqrs_ids=["a"])
    closed = Hooked({"queue": "replica"})
    closed.close()
    with pytest.raises(TransportClosed):
        closed.consume(lambda payloads: [], cqrs_ids=["a"])
    assert closed.calls == []


def test_old_style_consume_override_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"implement _consume\(\) instead"):

        class OldStyle(BaseTransport):
            name = "old_style"
            api_version = 1

            def _publish(self, messages: Sequence[Outgoing]) -> None:
                pass

            def consume(
                self,
                handler: Handler,
                *,
                cqrs_ids: Collection[str],
                on_ready: Callable[[], None] | None = None,
                on_tick: Callable[[], None] | None = None,
            ) -> None:
                self._check_open()
                self.seen = sorted(cqrs_ids)

            def _close(self) -> None:
                pass

    transport = OldStyle({"queue": "replica"})
    transport.consume(lambda payloads: [], cqrs_ids=["b", "a"])
    assert transport.seen == ["a", "b"]
    assert get_transport_class(f"{__name__}.Hooked") is Hooked


class Undeclared(BaseTransport):
    name = "undeclared"

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        pass

    def _consume(self, handler: Handler, **kwargs: object) -> None:
        pass

    def _close(self) -> None:
        pass


def test_missing_api_version_is_refused_with_the_fix() -> None:
    """No default claims compatibility: the class must state the version it was written for."""
    fix = r"add `api_version = 1` to the class"
    with pytest.raises(TransportLoadError, match=fix):
        get_transport_class(f"{__name__}.Undeclared")
    with pytest.raises(TransportLoadError, match=fix):
        Undeclared({})
    assert "api_version" not in BaseTransport.__dict__


@pytest.mark.parametrize(
    ("reason", "header"),
    [
        ("boom", "boom"),
        ("line one\nline two", "line one\\nline two"),
        ("crlf\r\nand cr\rend", "crlf\\nand cr\\nend"),
        ("x" * 1500, "x" * wire.REASON_MAX),
    ],
)
def test_header_reason_is_one_bounded_line(reason: str, header: str) -> None:
    assert wire.header_reason(reason) == header


def test_read_reason_accepts_bytes_text_and_nothing() -> None:
    assert wire.read_reason({wire.DEAD_REASON_HEADER: "é".encode()}) == "é"
    assert wire.read_reason({wire.DEAD_REASON_HEADER: "why"}) == "why"
    assert wire.read_reason(None) == ""


def test_retry_and_dead_letter_messages_follow_the_wire_rules() -> None:
    """Retries carry retries+1, delay and due time; both carry a one-line reason header."""
    transport = MemoryTransport({"queue": "replica", "url": "memory://contract"})
    payload = make_payload(3)
    message = Inbound(b"{}")
    failed = Settled(message, payload, Outcome.retry(2.0, "db\ndown"))
    before = wire.due_at(2.0)
    retry = transport.retry_message(failed)
    assert retry.payload is not None and retry.payload.retries == payload.retries + 1
    assert retry.queue == "replica" and retry.delay == 2.0
    assert retry.due is not None and before <= retry.due <= wire.due_at(2.0)
    assert retry.headers == {wire.RETRY_REASON_HEADER: "db\\ndown"}
    dead = transport.dead_letter_message(Settled(message, payload, Outcome.dead("a\nb")))
    assert dead.headers == {wire.DEAD_REASON_HEADER: "a\\nb"}
    assert dead.body == b"{}"
    transport.close()


def test_memory_consumer_dropped_without_close_gives_its_batch_back() -> None:
    """The in-process stand-in for a killed consumer (see `crash_in_process`)."""
    from cqrs_core.testing.consuming import Recorder, consume_until, crash_in_process

    options = {"url": "memory://dropped", "queue": "replica"}
    MemoryTransport(options).declare(["conformance_a"])
    MemoryTransport(options).produce(make_payload(1, "conformance_a"))
    crash_in_process(lambda: MemoryTransport(options), cqrs_ids=["conformance_a"])
    recorder = Recorder()
    consume_until(
        MemoryTransport(options),
        recorder,
        lambda: recorder.count() >= 1,
        cqrs_ids=["conformance_a"],
    )
    assert recorder.pks() == [1]
