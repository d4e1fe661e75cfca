"""OpenTelemetry tracing (issue 16): one trace from the master's save to the replica's apply.

The master is this process, with the SDK's `InMemorySpanExporter`; the replica is a real
`cqrs_consume` subprocess whose settings (`tracing_settings`) write its spans to a JSON-lines
file. The trace context crosses the broker in message headers (W3C `traceparent`), never in the
body, on RabbitMQ, kombu (Redis) and Kafka. The in-process tests below check the pieces without
a broker: header-less (django-cqrs 3.x) messages, batches, the outbox row, tracing off.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Replication
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind

from cqrs_core import wire
from cqrs_core.constants import SignalType
from cqrs_core.messages import Outcome
from cqrs_core.payload import TransportPayload
from cqrs_core.testing.consuming import Recorder, consume_until
from cqrs_core.testing.suite import unique_name
from cqrs_core.transports.memory import MemoryBroker, MemoryTransport

HERE = Path(__file__).resolve().parent
TRACED_BACKENDS = ("rabbitmq", "kombu-redis", "kafka")


@pytest.fixture(scope="module")
def master_spans() -> Iterator[InMemorySpanExporter]:
    """The spans this (master) process finishes; the SDK is installed once per process."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": "master"}))
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.clear()


@pytest.fixture
def tracing_on() -> Iterator[Any]:
    from dj_cqrs.observability import tracing

    tracing.enable({"transport": "memory", "queue": "traced"})
    try:
        yield tracing
    finally:
        tracing.disable()


@pytest.fixture
def outbox_tracing(settings: Any) -> Iterator[Callable[[], None]]:
    """`CQRS['tracing']` on, outbox rows kept after sending; call the result to turn tracing off."""
    master = {**settings.CQRS.get("master", {}), "outbox": {"keep_days": 1}}  # rows stay
    settings.CQRS = {**settings.CQRS, "tracing": True, "master": master}

    def off() -> None:
        settings.CQRS = {k: v for k, v in settings.CQRS.items() if k != "tracing"}

    yield off
    off()


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def _spans(exporter: InMemorySpanExporter, trace_id: int) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- master → broker → cqrs_consume subprocess ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", TRACED_BACKENDS, indirect=True)
def test_one_trace_from_save_to_apply(
    replication: Replication,
    master_spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A save inside a request span and its apply on the replica share one trace id."""
    from cqrs_testproject.master_app.models import Author
    from cqrs_testproject.replica_app.models import AuthorRef

    spans_file = tmp_path / "replica-spans.jsonl"
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tracing_settings")
    monkeypatch.setenv("CQRS_TEST_SPANS_FILE", str(spans_file))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    )
    replication.configure_master(tracing=True)
    replication.consumer(tracing=True)
    master_spans.clear()

    tracer = trace.get_tracer("test_tracing")
    with tracer.start_as_current_span("POST /authors", kind=SpanKind.SERVER) as request:
        author = Author.objects.create(name="traced", email="traced@example.com")
    trace_id = request.get_span_context().trace_id

    replication.wait_until(
        lambda: AuthorRef.objects.filter(pk=author.pk).exists(), "the replica to apply the save"
    )
    replication.wait_until(
        lambda: any(s["name"] == "process author" for s in _read(spans_file)),
        "the replica's process span",
    )
    replication.wait_until(
        lambda: any(s.name == "send author" for s in _spans(master_spans, trace_id)),
        "the master's send span",
    )

    master = {s.name: s for s in _spans(master_spans, trace_id)}
    create = master["create author"]
    assert create.kind is SpanKind.PRODUCER
    assert create.parent is not None and create.parent.span_id == request.get_span_context().span_id
    assert create.attributes["messaging.operation.type"] == "create"
    assert create.attributes["messaging.destination.name"] == "author"
    assert create.attributes["messaging.system"] == replication.backend.settings["transport"]
    send = master["send author"]
    assert send.kind is SpanKind.CLIENT
    assert send.parent is not None and send.parent.span_id == create.context.span_id
    assert [link.context.span_id for link in send.links] == [create.context.span_id]

    processed = [s for s in _read(spans_file) if s["name"] == "process author"]
    assert len(processed) == 1, processed
    (process,) = processed
    assert process["trace_id"] == _hex(trace_id, 32), "the replica started another trace"
    assert process["service"] == "replica"
    assert process["kind"] == "CONSUMER"
    assert process["parent_id"] == _hex(create.context.span_id, 16)
    assert process["links"] == [f"{_hex(trace_id, 32)}/{_hex(create.context.span_id, 16)}"]
    assert process["attributes"]["messaging.operation.type"] == "process"
    assert process["attributes"]["messaging.consumer.group.name"] == replication.backend.queue
    assert process["attributes"]["cqrs.outcome"] == "applied"
    assert process["status"] != "ERROR"


# -- in process, on the memory transport ---------------------------------------------------------


def _payload(pk: int, **fields: Any) -> TransportPayload:
    return TransportPayload(
        signal_type=SignalType.SAVE,
        cqrs_id="author",
        instance_data={"id": pk, "cqrs_revision": 0},
        instance_pk=pk,
        correlation_id=f"c{pk}",
        **fields,
    )


@pytest.fixture
def memory() -> Iterator[Any]:
    name = unique_name("trace")
    options = {"transport": "memory", "url": f"memory://{name}", "queue": "traced"}
    consumer, producer = MemoryTransport(options), MemoryTransport(options)
    consumer.declare(["author"])
    yield consumer, producer
    consumer.close()
    producer.close()
    MemoryBroker.drop(name)


def test_stamp_send_and_process_join_one_trace(
    tracing_on: Any, master_spans: InMemorySpanExporter, memory: Any
) -> None:
    consumer, producer = memory
    master_spans.clear()
    payload = _payload(1)
    with trace.get_tracer("t").start_as_current_span("request") as request:
        tracing_on.stamp([payload])
    trace_id = request.get_span_context().trace_id
    assert payload.headers[wire.TRACEPARENT_HEADER].split("-")[1] == _hex(trace_id, 32)
    # what the outbox row keeps and gives back to the relay
    stored = tracing_on.stored(payload)
    untraced = dataclasses.replace(payload, headers={})
    assert dict(tracing_on.restored(untraced, stored).headers) == dict(payload.headers)
    with tracing_on.sending([payload]) as sent:
        producer.produce_many(sent)
    recorder = Recorder()
    consume_until(
        consumer,
        tracing_on.instrument_handler(recorder),
        lambda: recorder.count() >= 1,
        cqrs_ids=["author"],
    )
    spans = {s.name: s for s in _spans(master_spans, trace_id)}
    assert {"request", "create author", "send author", "process author"} <= set(spans)
    create = spans["create author"]
    assert spans["process author"].parent.span_id == create.context.span_id
    assert spans["process author"].kind is SpanKind.CONSUMER
    assert dict(recorder.payloads[0].headers) == dict(payload.headers)


def test_message_without_trace_headers_starts_a_trace(
    tracing_on: Any, master_spans: InMemorySpanExporter, memory: Any
) -> None:
    """A django-cqrs 3.x master sends no `traceparent`: applied, in a trace of its own."""
    consumer, producer = memory
    master_spans.clear()
    producer.produce(_payload(2))
    recorder = Recorder()
    consume_until(
        consumer,
        tracing_on.instrument_handler(recorder),
        lambda: recorder.count() >= 1,
        cqrs_ids=["author"],
    )
    (process,) = [s for s in master_spans.get_finished_spans() if s.name == "process author"]
    assert process.parent is None and not process.links
    assert recorder.pks() == [2]


def test_a_batch_links_every_message(
    tracing_on: Any, master_spans: InMemorySpanExporter, memory: Any
) -> None:
    """Several messages, several traces: one process span, linked to each (semconv)."""
    consumer, producer = memory
    payloads = [_payload(pk) for pk in (3, 4, 5)]
    for payload in payloads:
        with trace.get_tracer("t").start_as_current_span("request"):
            tracing_on.stamp([payload])
    producer.produce_many(payloads)
    master_spans.clear()
    recorder = Recorder()
    consume_until(
        consumer,
        tracing_on.instrument_handler(recorder),
        lambda: recorder.count() >= 3,
        cqrs_ids=["author"],
    )
    processed = [s for s in master_spans.get_finished_spans() if s.name == "process author"]
    linked = {link.context.span_id for s in processed for link in s.links}
    assert len(linked) == 3
    assert sum(len(s.links) for s in processed) == 3
    for span in processed:
        if len(span.links) > 1:
            assert span.parent is None
            assert span.attributes["messaging.batch.message_count"] == len(span.links)


def test_failed_apply_marks_the_span(
    tracing_on: Any, master_spans: InMemorySpanExporter, memory: Any
) -> None:
    consumer, producer = memory
    master_spans.clear()
    producer.produce(_payload(6))
    recorder = Recorder(lambda p, seen: Outcome.dead("nope"))
    consume_until(
        consumer,
        tracing_on.instrument_handler(recorder),
        lambda: recorder.count() >= 1,
        cqrs_ids=["author"],
    )
    (process,) = [s for s in master_spans.get_finished_spans() if s.name == "process author"]
    assert process.status.status_code.name == "ERROR"
    assert process.attributes["cqrs.outcome"] == "dead"


def test_off_is_free_and_leaves_messages_alone(memory: Any) -> None:
    """Tracing off: hooks return their input, no header is added, the body is unchanged."""
    from dj_cqrs.observability import tracing

    assert not tracing.ON
    payload = _payload(7)
    tracing.stamp([payload])
    assert dict(payload.headers) == {}
    assert tracing.stored(payload) is None

    def handler(payloads: Any) -> list[Outcome]:
        return [Outcome.applied()] * len(payloads)

    assert tracing.instrument_handler(handler) is handler
    with tracing.sending([payload]) as sent:
        assert sent == [payload]
    _, producer = memory
    traced = dataclasses.replace(payload, headers={wire.TRACEPARENT_HEADER: "00-" + "1" * 32})
    assert producer.outgoing(traced).body == producer.outgoing(payload).body


# -- Django: the setting, the outbox row ---------------------------------------------------------


def test_cqrs_tracing_setting_turns_the_hooks_on_and_off(settings: Any) -> None:
    from dj_cqrs.observability import tracing

    settings.CQRS = {**settings.CQRS, "tracing": True}
    assert tracing.ON
    settings.CQRS = {k: v for k, v in settings.CQRS.items() if k != "tracing"}
    assert not tracing.ON


@pytest.mark.django_db(transaction=True)
def test_outbox_row_keeps_the_context_of_the_save(
    outbox_tracing: Callable[[], None], master_spans: InMemorySpanExporter
) -> None:
    """The context is captured in the saving thread and sent later from the row (relay)."""
    from cqrs_testproject.master_app.models import Author
    from django.db import transaction

    from dj_cqrs.outbox import rows
    from dj_cqrs.outbox.models import OutboxEvent

    with trace.get_tracer("t").start_as_current_span("request") as request:
        with transaction.atomic():
            author = Author.objects.create(name="row", email="row@example.com")
    trace_id = request.get_span_context().trace_id
    row = OutboxEvent.objects.filter(cqrs_id="author", instance_pk=str(author.pk)).latest("id")
    assert row.trace_context
    stored = json.loads(row.trace_context)
    assert stored[wire.TRACEPARENT_HEADER].split("-")[1] == _hex(trace_id, 32)
    assert wire.TRACEPARENT_HEADER not in row.body  # never in the body
    (payload,) = rows.payloads_of([row])
    assert dict(payload.headers) == stored

    outbox_tracing()  # off
    with transaction.atomic():
        untraced = Author.objects.create(name="untraced", email="untraced@example.com")
    row = OutboxEvent.objects.filter(cqrs_id="author", instance_pk=str(untraced.pk)).latest("id")
    assert row.trace_context is None


@pytest.mark.django_db(transaction=True)
def test_one_statement_save_keeps_the_context(
    outbox_tracing: Callable[[], None], master_spans: InMemorySpanExporter
) -> None:
    """Tracing keeps PostgreSQL's one-statement save: the context goes into the same INSERT."""
    from cqrs_testproject.master_app.models import Author
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dj_cqrs.outbox.models import OutboxEvent

    with trace.get_tracer("t").start_as_current_span("request") as request:
        with CaptureQueriesContext(connection) as queries:
            author = Author.objects.create(name="one", email="one@example.com")
    trace_id = request.get_span_context().trace_id
    row = OutboxEvent.objects.filter(cqrs_id="author", instance_pk=str(author.pk)).latest("id")
    assert row.trace_context
    traceparent = json.loads(row.trace_context)[wire.TRACEPARENT_HEADER]
    assert traceparent.split("-")[1] == _hex(trace_id, 32)
    assert "create author" in {s.name for s in _spans(master_spans, trace_id)}
    first_words = [query["sql"].split(" ", 1)[0] for query in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert first_words == ["WITH"]
