"""Settings of a `cqrs_consume` subprocess of `test_tracing`: the test project, plus an
OpenTelemetry SDK that appends every finished span as a JSON line to $CQRS_TEST_SPANS_FILE."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from cqrs_testproject.settings import *  # noqa: F403
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

SPANS_FILE_ENV = "CQRS_TEST_SPANS_FILE"


class JsonLinesExporter(SpanExporter):
    """One JSON object per span: what the test compares with the master's spans."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(as_dict(span)) + "\n" for span in spans]
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.writelines(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def as_dict(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "links": [
            f"{link.context.trace_id:032x}/{link.context.span_id:016x}" for link in span.links
        ],
        "attributes": dict(span.attributes or {}),
        "service": (span.resource.attributes.get("service.name") if span.resource else None),
        "status": span.status.status_code.name,
    }


if os.environ.get(SPANS_FILE_ENV):
    _provider = TracerProvider(resource=Resource.create({"service.name": "replica"}))
    _provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ[SPANS_FILE_ENV])))
    trace.set_tracer_provider(_provider)
