"""The span tree of one event, from the master's save to the replica's apply (issue 16).

With opentelemetry-sdk installed, `run.py` gives every service process `DEMO_SPANS_FILE`; their
settings call `setup(service)`, which turns `CQRS['tracing']` on and appends each finished span
as a JSON line to that file. After the run the demo picks one event and prints its trace: the
master's `create` and `send` spans and the replica's `process` span, joined by the W3C
`traceparent` header the event carried.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
SPANS_ENV = "DEMO_SPANS_FILE"


def available() -> bool:
    """opentelemetry-sdk is installed (the services export their spans with it)."""
    return importlib.util.find_spec("opentelemetry.sdk") is not None


def environment(workdir: Path) -> dict[str, str]:
    """What the service processes need to trace: the spans file and this folder on the path."""
    if not available():
        return {}
    path = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {SPANS_ENV: str(workdir / "spans.jsonl"), "PYTHONPATH": os.pathsep.join(path)}


def setup(service: str) -> bool:
    """In a service's settings: export spans to $DEMO_SPANS_FILE; True if tracing is on."""
    path = os.environ.get(SPANS_ENV)
    if not path or not available():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    lock = threading.Lock()

    class JsonLines(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            lines = [json.dumps(_as_dict(span)) + "\n" for span in spans]
            with lock, open(path, "a", encoding="utf-8") as out:
                out.writelines(lines)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))
    trace.set_tracer_provider(provider)
    return True


def _as_dict(span: Any) -> dict[str, Any]:
    context = span.get_span_context()
    return {
        "service": span.resource.attributes.get("service.name"),
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "links": [f"{link.context.span_id:016x}" for link in span.links],
        "start": span.start_time,
        "end": span.end_time,
    }


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def one_event(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans of the first event whose replica `process` span is the child of its `create`
    span (a batch of one), else one that is only linked to it (a batch of several)."""
    creates = [s for s in spans if s["name"].startswith("create ")]
    processes = [s for s in spans if s["name"].startswith("process ")]
    for linked_ok in (False, True):
        for create in sorted(creates, key=lambda s: s["start"]):
            process = [
                p
                for p in processes
                if p["parent_id"] == create["span_id"]
                or (linked_ok and create["span_id"] in p["links"])
            ]
            if process:
                same = [s for s in spans if s["trace_id"] == create["trace_id"]]
                linked = [p for p in process if p["trace_id"] != create["trace_id"]]
                sends = [
                    s
                    for s in spans
                    if s["name"].startswith("send ") and create["span_id"] in s["links"]
                ]
                found = {s["span_id"]: s for s in [*same, *sends[:1], *linked[:1]]}
                return list(found.values())
    return []


def print_tree(out: IO[str], path: Path) -> None:
    """Print the trace of one event: service, span and duration, children indented."""
    if not available():
        out.write("\nTracing: pip install opentelemetry-sdk to see the span tree of an event.\n")
        return
    spans = one_event(read(path))
    out.write("\nSpan tree of one event (OpenTelemetry; CQRS['tracing'] = True):\n")
    if not spans:
        out.write("  no event was traced from its save to its apply\n")
        return
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        if parent is None and span["links"]:
            parent = next((link for link in span["links"] if link in ids), None)
            span = {**span, "via": "link"}
        children.setdefault(parent, []).append(span)

    def show(span: dict[str, Any], depth: int) -> None:
        duration = (span["end"] - span["start"]) / 1e6
        via = "  (linked)" if span.get("via") else ""
        out.write(
            f"  {'  ' * depth}{span['service']:<8} {span['name']:<28} {duration:8.2f} ms"
            f"  {span['kind'].lower()}{via}\n"
        )
        for child in sorted(children.get(span["span_id"], []), key=lambda s: s["start"]):
            show(child, depth + 1)

    for root in sorted(children.get(None, []), key=lambda s: s["start"]):
        show(root, 0)
    out.write(f"  trace id {spans[0]['trace_id']}\n")
