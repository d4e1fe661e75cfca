"""The conformance suite every transport must pass: subclass it and provide two fixtures.

```python
class TestMyTransport(TransportConformance):
    @pytest.fixture
    def transport_class(self):
        return MyTransport

    @pytest.fixture
    def transport_options(self):
        options = {"url": ..., "queue": f"conformance_{uuid.uuid4().hex[:8]}"}
        yield options
        ...  # delete what the test created on the broker
```

`transport_options` must give each test its own names (queue, exchange, topic prefix...) so
runs sharing a broker cannot see each other. A test a transport cannot pass may be overridden
only with `@pytest.mark.xfail(reason=...)`; optional behaviours are claimed with
`BaseTransport.capabilities` and the tests that need them skip themselves otherwise.

Shared options every transport honours (tested here): `batch_size` and `batch_timeout` (a
batch never exceeds the size and a partial one is handed over after the timeout),
`consumer_prefetch_count` (never more messages taken unsettled, so never a bigger batch),
`exchange` (services on different exchanges never see each other's messages; the test uses
`exchange=<yours>_other`, `queue=<yours>_other`: clean both up) and, with
`Capability.DEAD_LETTER_TTL`, `replica.dead_message_ttl`.

Redelivery after a crash (`Capability.REDELIVERY`) is tested through the `crash_consumer`
fixture: by default a consumer in a child process (`transport_options` must be JSON) is killed
with SIGKILL while its handler holds a batch. For an in-process broker, override it with
`cqrs_core.testing.consuming.crash_in_process`.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from importlib.metadata import entry_points
from typing import Any, TypeVar

import pytest

from cqrs_core import wire
from cqrs_core.constants import SignalType
from cqrs_core.exceptions import TransportClosed
from cqrs_core.messages import Handler, Outcome, Outgoing
from cqrs_core.payload import TransportPayload
from cqrs_core.testing.consuming import Recorder, consume_until, crash_in_subprocess
from cqrs_core.transports.base import BaseTransport, Capability

F = TypeVar("F", bound=Callable[..., Any])

CQRS_A = "conformance_a"
CQRS_B = "conformance_b"
IDS = (CQRS_A, CQRS_B)
MakeTransport = Callable[..., BaseTransport]


def requires(*caps: Capability) -> Callable[[F], F]:
    """Skip the decorated test unless the transport claims every capability in `caps`."""

    def mark(test: F) -> F:
        test.__cqrs_requires__ = frozenset(caps)  # type: ignore[attr-defined]
        return test

    return mark


def make_payload(pk: int = 1, cqrs_id: str = CQRS_A, **fields: Any) -> TransportPayload:
    """A SAVE payload with data shaped like a real master's."""
    data = {"id": pk, "cqrs_revision": fields.pop("revision", 0), "name": f"row {pk} ü/é"}
    values: dict[str, Any] = {
        "signal_type": SignalType.SAVE,
        "cqrs_id": cqrs_id,
        "instance_data": data,
        "instance_pk": pk,
        "expires": datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1),
        "meta": {"source": "conformance"},
    }
    values.update(fields)
    return TransportPayload(**values)


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class TransportConformance:
    """Broker-backed behaviour every transport shares."""

    consume_timeout: float = 60.0
    """Seconds a test waits for deliveries (raise it for brokers with slow group joins)."""

    @pytest.fixture
    def transport_class(self) -> type[BaseTransport]:
        raise NotImplementedError("Override `transport_class` to return your transport class.")

    @pytest.fixture
    def transport_options(self) -> Mapping[str, Any]:
        raise NotImplementedError(
            "Override `transport_options` to return options with names unique to this test."
        )

    @pytest.fixture
    def make_transport(
        self, transport_class: type[BaseTransport], transport_options: Mapping[str, Any]
    ) -> Iterator[MakeTransport]:
        """Build transports from `transport_options` merged with per-call overrides."""
        created: list[BaseTransport] = []

        def make(**overrides: Any) -> BaseTransport:
            transport = transport_class(_merge(transport_options, overrides))
            created.append(transport)
            return transport

        yield make
        for transport in created:
            transport.close()

    @pytest.fixture
    def crash_consumer(
        self, transport_class: type[BaseTransport], transport_options: Mapping[str, Any]
    ) -> Callable[..., None]:
        """`crash(**overrides)`: a consumer takes a batch and dies without settling or closing.

        Default: a child process killed with SIGKILL (`crash_in_subprocess`). In-process
        brokers return `crash_in_process` instead, e.g.
        `lambda **kw: crash_in_process(lambda: make_transport(**kw), cqrs_ids=IDS)`.
        """

        def crash(**overrides: Any) -> None:
            crash_in_subprocess(
                transport_class,
                _merge(transport_options, overrides),
                cqrs_ids=IDS,
                timeout=self.consume_timeout,
            )

        return crash

    @pytest.fixture(autouse=True)
    def _capability_gate(
        self, request: pytest.FixtureRequest, transport_class: type[BaseTransport]
    ) -> None:
        wanted: frozenset[Capability] = getattr(request.function, "__cqrs_requires__", frozenset())
        if missing := wanted - transport_class.capabilities:
            pytest.skip(f"{transport_class.name} lacks {sorted(c.value for c in missing)}")

    def consume(
        self, transport: BaseTransport, handler: Handler, until: Callable[[], bool], **kw: Any
    ) -> None:
        kw.setdefault("cqrs_ids", IDS)
        kw.setdefault("timeout", self.consume_timeout)
        consume_until(transport, handler, until, **kw)

    # -- identity and lifecycle ------------------------------------------------------------

    def test_registered_under_entry_point(self, transport_class: type[BaseTransport]) -> None:
        """The distribution advertises this class under its own `name`."""
        eps = entry_points(group="cqrs_core.transports", name=transport_class.name)
        assert [ep.load() for ep in eps] == [transport_class]

    def test_close_is_idempotent_and_produce_after_close_raises(
        self, make_transport: MakeTransport
    ) -> None:
        """`close()` twice is fine; producing on a closed transport is a clear error."""
        transport = make_transport()
        transport.close()
        transport.close()
        with pytest.raises(TransportClosed):
            transport.produce(make_payload())

    # -- delivery --------------------------------------------------------------------------

    def test_round_trip_keeps_every_field(self, make_transport: MakeTransport) -> None:
        """What a master produces reaches the replica's handler unchanged."""
        consumer = make_transport()
        consumer.declare(IDS)
        sent = make_payload(
            7,
            previous_data={"name": "before"},
            correlation_id="corr-7",
            meta={"k": [1, "two", None]},
        )
        make_transport().produce(sent)
        recorder = Recorder()
        self.consume(consumer, recorder, lambda: recorder.count() >= 1, settle=0.3)
        assert recorder.count() == 1
        got = recorder.payloads[0]
        assert got.signal_type is SignalType.SAVE
        assert (got.cqrs_id, got.instance_pk, got.retries) == (CQRS_A, 7, 0)
        assert dict(got.instance_data) == dict(sent.instance_data)
        assert got.previous_data == {"name": "before"}
        assert (got.correlation_id, got.meta) == ("corr-7", {"k": [1, "two", None]})
        assert got.expires == sent.expires

    @requires(Capability.HEADERS)
    def test_context_headers_reach_the_handler_and_leave_the_body_alone(
        self, make_transport: MakeTransport
    ) -> None:
        """`TransportPayload.headers` (trace context) arrive with the payload, body unchanged."""
        consumer = make_transport()
        consumer.declare(IDS)
        headers = {
            wire.TRACEPARENT_HEADER: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            wire.TRACESTATE_HEADER: "congo=t61rcWkgMzE",
        }
        traced = make_payload(1, headers=headers)
        plain = make_payload(2)
        producer = make_transport()
        untraced = dataclasses.replace(traced, headers={})
        assert producer.outgoing(traced).body == producer.outgoing(untraced).body
        producer.produce_many([traced, plain])
        recorder = Recorder()
        self.consume(consumer, recorder, lambda: recorder.count() >= 2, settle=0.3)
        got = {p.instance_pk: p for p in recorder.payloads}
        assert dict(got[1].headers) == headers
        assert dict(got[2].headers) == {}

    def test_many_messages_each_delivered_once(self, make_transport: MakeTransport) -> None:
        """A burst sent with `produce_many` arrives complete, without duplicates."""
        consumer = make_transport()
        consumer.declare(IDS)
        make_transport().produce_many(
            [make_payload(pk, CQRS_A if pk % 2 else CQRS_B) for pk in range(1, 61)]
        )
        recorder = Recorder()
        self.consume(consumer, recorder, lambda: recorder.count() >= 60, settle=0.5)
        assert sorted(recorder.pks()) == list(range(1, 61))

    def test_broadcast_reaches_every_queue_and_directed_sync_only_its_own(
        self, make_transport: MakeTransport, transport_options: Mapping[str, Any]
    ) -> None:
        """SAVE goes to every replica; a SYNC with `queue` reaches only that replica."""
        mine = make_transport()
        other_queue = f"{transport_options['queue']}_other"
        other = make_transport(queue=other_queue)
        mine.declare(IDS)
        other.declare(IDS)
        producer = make_transport()
        producer.produce(make_payload(1))
        producer.produce(make_payload(2, signal_type=SignalType.SYNC, queue=other_queue))
        producer.produce(make_payload(3, signal_type=SignalType.SYNC))
        mine_rec, other_rec = Recorder(), Recorder()
        self.consume(other, other_rec, lambda: other_rec.count() >= 3, settle=0.3)
        self.consume(mine, mine_rec, lambda: mine_rec.count() >= 2, settle=0.5)
        assert sorted(other_rec.pks()) == [1, 2, 3]
        assert sorted(mine_rec.pks()) == [1, 3]
        directed = next(p for p in other_rec.payloads if p.instance_pk == 2)
        assert directed.signal_type is SignalType.SYNC
        assert directed.queue == other_queue

    def test_filtered_consumer_gives_other_ids_back(self, make_transport: MakeTransport) -> None:
        """A consumer limited to some CQRS_IDs never loses messages of the others."""
        filtered = make_transport()
        filtered.declare(IDS)
        make_transport().produce_many([make_payload(1, CQRS_A), make_payload(2, CQRS_B)])
        only_a = Recorder()
        self.consume(filtered, only_a, lambda: only_a.count() >= 1, cqrs_ids=(CQRS_A,), settle=0.3)
        assert only_a.pks() == [1]
        filtered.close()
        everything = Recorder()
        self.consume(make_transport(), everything, lambda: everything.count() >= 1, settle=0.3)
        assert everything.pks() == [2]

    # -- failures --------------------------------------------------------------------------

    @requires(Capability.DELAYED_RETRY)
    def test_retry_waits_its_delay_and_counts_retries(self, make_transport: MakeTransport) -> None:
        """A RETRY comes back after its delay with `retries` one higher, then applies."""
        consumer = make_transport()
        consumer.declare(IDS)
        make_transport().produce(make_payload(1))
        recorder = Recorder(
            lambda p, seen: Outcome.retry(1.0, "not yet") if seen == 1 else Outcome.applied()
        )
        self.consume(consumer, recorder, lambda: recorder.count() >= 2, settle=0.3)
        assert [p.retries for p in recorder.payloads] == [0, 1]
        assert recorder.times[1] - recorder.times[0] >= 0.9

    @requires(Capability.DELAYED_RETRY)
    def test_handler_exception_is_retried_by_policy(self, make_transport: MakeTransport) -> None:
        """A handler that raises fails its batch, which is retried after CQRS_RETRY_DELAY."""
        consumer = make_transport(replica={"CQRS_RETRY_DELAY": 0.2, "CQRS_MAX_RETRIES": 5})
        consumer.declare(IDS)
        make_transport().produce(make_payload(1))
        calls: list[list[int]] = []
        recorder = Recorder()

        def handler(payloads: Any) -> list[Outcome]:
            calls.append([p.retries for p in payloads])
            if len(calls) < 3:
                raise RuntimeError("database is down")
            return recorder(payloads)

        self.consume(consumer, handler, lambda: recorder.count() >= 1, settle=0.3)
        assert calls == [[0], [1], [2]]
        assert recorder.pks() == [1]

    @requires(Capability.DELAYED_RETRY, Capability.DEAD_LETTER)
    def test_retries_exhausted_go_to_dead_letters(self, make_transport: MakeTransport) -> None:
        """After CQRS_MAX_RETRIES failed retries the message is a dead letter, not lost."""
        consumer = make_transport(replica={"CQRS_RETRY_DELAY": 0.1, "CQRS_MAX_RETRIES": 2})
        consumer.declare(IDS)
        make_transport().produce(make_payload(1))
        recorder = Recorder(lambda p, seen: Outcome.retry(reason="boom"))
        self.consume(consumer, recorder, lambda: len(consumer.dead_letters()) >= 1, settle=0.5)
        assert [p.retries for p in recorder.payloads] == [0, 1, 2]
        letters = consumer.dead_letters()
        assert len(letters) == 1
        assert letters[0].payload is not None and letters[0].payload.retries == 2
        assert "boom" in letters[0].reason

    @requires(Capability.DEAD_LETTER)
    def test_expired_message_is_dead_lettered_unapplied(
        self, make_transport: MakeTransport
    ) -> None:
        """A message past `expires` goes to the dead letters without reaching the handler."""
        consumer = make_transport()
        consumer.declare(IDS)
        past = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=5)
        make_transport().produce_many([make_payload(1, expires=past), make_payload(2)])
        recorder = Recorder()
        self.consume(
            consumer,
            recorder,
            lambda: recorder.count() >= 1 and len(consumer.dead_letters()) >= 1,
            settle=0.3,
        )
        assert recorder.pks() == [2]
        (letter,) = consumer.dead_letters()
        assert letter.payload is not None and letter.payload.instance_pk == 1
        assert "expired" in letter.reason

    @requires(Capability.DEAD_LETTER)
    def test_malformed_bodies_are_dead_lettered_with_reason(
        self, make_transport: MakeTransport
    ) -> None:
        """Bodies that are not CQRS payloads are kept as dead letters; consuming goes on."""
        consumer = make_transport()
        consumer.declare(IDS)
        producer = make_transport()
        bad = [
            b"not json at all",
            b'{"signal_type":"SAVE"}',
            b'{"signal_type":"EXPLODE","cqrs_id":"conformance_a","instance_data":{}}',
            b'{"signal_type":"SAVE","cqrs_id":"conformance_a","instance_data":[1]}',
        ]
        producer._publish([Outgoing(body=body, cqrs_id=CQRS_A) for body in bad])
        producer.produce(make_payload(9))
        recorder = Recorder()
        self.consume(
            consumer,
            recorder,
            lambda: recorder.count() >= 1 and len(consumer.dead_letters()) >= len(bad),
            settle=0.3,
        )
        assert recorder.pks() == [9]
        letters = consumer.dead_letters()
        assert sorted(letter.body for letter in letters) == sorted(bad)
        assert all(letter.reason.startswith("malformed message") for letter in letters)

    @requires(Capability.DEAD_LETTER)
    def test_dead_letters_can_be_retried_and_purged(self, make_transport: MakeTransport) -> None:
        """`retry_dead_letters` sends them back (retries reset); `purge` deletes them."""
        consumer = make_transport()
        consumer.declare(IDS)
        make_transport().produce_many([make_payload(1), make_payload(2)])
        first = Recorder(lambda p, seen: Outcome.dead("rejected"))
        self.consume(consumer, first, lambda: len(consumer.dead_letters()) >= 2, settle=0.3)
        assert consumer.retry_dead_letters(limit=1) == 1
        second = Recorder()
        self.consume(consumer, second, lambda: second.count() >= 1, settle=0.3)
        assert len(second.pks()) == 1 and second.payloads[0].retries == 0
        assert len(consumer.dead_letters()) == 1
        assert consumer.purge_dead_letters() == 1
        assert consumer.dead_letters() == []
        assert consumer.purge_dead_letters() == 0

    @requires(Capability.REDELIVERY)
    def test_message_is_redelivered_after_consumer_dies_unsettled(
        self, make_transport: MakeTransport
    ) -> None:
        """A consumer that dies mid-batch loses nothing: the next one gets the batch again."""
        first = make_transport()
        first.declare(IDS)
        make_transport().produce_many([make_payload(1), make_payload(2)])

        class Killed(BaseException):
            pass

        def die(payloads: Any) -> list[Outcome]:
            raise Killed

        with pytest.raises(Killed):
            self.consume(first, die, lambda: False)
        first.close()
        recorder = Recorder()
        self.consume(make_transport(), recorder, lambda: recorder.count() >= 2, settle=0.3)
        assert sorted(recorder.pks()) == [1, 2]

    @requires(Capability.REDELIVERY)
    def test_message_is_redelivered_after_consumer_is_killed(
        self, make_transport: MakeTransport, crash_consumer: Callable[..., None]
    ) -> None:
        """A consumer killed mid-batch (no settle, no close) loses nothing: the next one gets it."""
        make_transport().declare(IDS)
        make_transport().produce_many([make_payload(1), make_payload(2)])
        crash_consumer()
        recorder = Recorder()
        self.consume(make_transport(), recorder, lambda: len(set(recorder.pks())) >= 2)
        assert sorted(set(recorder.pks())) == [1, 2]

    @requires(Capability.DELAYED_RETRY)
    def test_pending_retry_survives_consumer_restart(self, make_transport: MakeTransport) -> None:
        """A retry scheduled by one consumer is delivered to the next one after a restart."""
        first = make_transport()
        first.declare(IDS)
        make_transport().produce(make_payload(1))
        failing = Recorder(lambda p, seen: Outcome.retry(1.0, "later"))
        self.consume(first, failing, lambda: failing.count() >= 1)
        first.close()
        recorder = Recorder()
        self.consume(make_transport(), recorder, lambda: recorder.count() >= 1, settle=0.3)
        assert [(p.instance_pk, p.retries) for p in recorder.payloads] == [(1, 1)]

    # -- shared options --------------------------------------------------------------------

    def test_batch_size_and_batch_timeout_are_honoured(self, make_transport: MakeTransport) -> None:
        """No batch exceeds `batch_size`; a partial batch is handed over after `batch_timeout`."""
        consumer = make_transport(replica={"batch_size": 3, "batch_timeout": 0.2})
        consumer.declare(IDS)
        make_transport().produce_many([make_payload(pk) for pk in range(1, 8)])
        recorder = Recorder()
        self.consume(consumer, recorder, lambda: recorder.count() >= 7, settle=0.3)
        assert sorted(recorder.pks()) == list(range(1, 8))
        assert max(recorder.batches) <= 3
        consumer.close()
        # 100 would never fill: the two messages must come anyway, after batch_timeout.
        waiting = make_transport(replica={"batch_size": 100, "batch_timeout": 0.3})
        make_transport().produce_many([make_payload(8), make_payload(9)])
        late = Recorder()
        self.consume(waiting, late, lambda: late.count() >= 2, settle=0.3)
        assert sorted(late.pks()) == [8, 9]

    def test_prefetch_count_bounds_what_a_consumer_holds(
        self, make_transport: MakeTransport
    ) -> None:
        """With `consumer_prefetch_count=2`, no batch holds more than 2 unsettled messages."""
        consumer = make_transport(consumer_prefetch_count=2, replica={"batch_size": 50})
        consumer.declare(IDS)
        make_transport().produce_many([make_payload(pk) for pk in range(1, 7)])
        recorder = Recorder()
        self.consume(consumer, recorder, lambda: recorder.count() >= 6, settle=0.3)
        assert sorted(recorder.pks()) == list(range(1, 7))
        assert max(recorder.batches) <= 2

    def test_exchange_separates_services(
        self, make_transport: MakeTransport, transport_options: Mapping[str, Any]
    ) -> None:
        """Replicas on another `exchange` never receive this exchange's messages."""
        other = {
            "exchange": f"{transport_options.get('exchange') or 'cqrs'}_other",
            "queue": f"{transport_options['queue']}_other",
        }
        mine, theirs = make_transport(), make_transport(**other)
        mine.declare(IDS)
        theirs.declare(IDS)
        make_transport().produce(make_payload(1))
        make_transport(**other).produce(make_payload(2))
        mine_rec, their_rec = Recorder(), Recorder()
        self.consume(theirs, their_rec, lambda: their_rec.count() >= 1, settle=0.5)
        self.consume(mine, mine_rec, lambda: mine_rec.count() >= 1, settle=0.5)
        assert (mine_rec.pks(), their_rec.pks()) == ([1], [2])

    @requires(Capability.DEAD_LETTER, Capability.DEAD_LETTER_TTL)
    def test_dead_letters_expire_after_dead_message_ttl(
        self, make_transport: MakeTransport
    ) -> None:
        """`replica.dead_message_ttl` seconds after dead-lettering, the dead letter is gone."""
        consumer = make_transport(replica={"dead_message_ttl": 1})
        consumer.declare(IDS)
        make_transport().produce(make_payload(1))
        recorder = Recorder(lambda p, seen: Outcome.dead("rejected"))
        self.consume(consumer, recorder, lambda: recorder.count() >= 1, settle=0.3)
        deadline = time.monotonic() + self.consume_timeout
        while consumer.dead_letters() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert consumer.dead_letters() == []

    @requires(Capability.DEAD_LETTER)
    def test_multiline_reason_survives_dead_lettering(self, make_transport: MakeTransport) -> None:
        """A reason with line breaks and 5000 characters is stored (headers: one line, bounded)."""
        consumer = make_transport()
        consumer.declare(IDS)
        make_transport().produce(make_payload(1))
        reason = "first line\r\nsecond line\n" + "x" * 5000
        recorder = Recorder(lambda p, seen: Outcome.dead(reason))
        self.consume(consumer, recorder, lambda: len(consumer.dead_letters()) >= 1, settle=0.3)
        (letter,) = consumer.dead_letters()
        assert letter.reason in (reason, wire.header_reason(reason))

    def test_stop_returns_and_hooks_are_called(self, make_transport: MakeTransport) -> None:
        """`on_ready` fires once bound, `on_tick` while idle, and `stop()` ends `consume`."""
        import threading

        consumer = make_transport()
        ready, ticks = threading.Event(), []
        thread = threading.Thread(
            target=consumer.consume,
            args=(Recorder(),),
            kwargs={"cqrs_ids": IDS, "on_ready": ready.set, "on_tick": lambda: ticks.append(1)},
            daemon=True,
        )
        thread.start()
        assert ready.wait(self.consume_timeout)
        deadline = time.monotonic() + 10
        while not ticks and time.monotonic() < deadline:
            time.sleep(0.05)
        consumer.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert ticks


def unique_name(prefix: str = "cqrs_test") -> str:
    """A broker-safe name no other test run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"
