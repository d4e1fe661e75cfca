"""OpenTelemetry spans from a master's save to a replica's apply, joined by message headers.

Optional, like the metrics: without `CQRS['tracing'] = True`, or without opentelemetry-api
(`pip install "cqrs-django[opentelemetry]"`), every hook checks the module flag `ON` and returns
at once; `opentelemetry` is never imported.

The spans follow the OpenTelemetry messaging semantic conventions:

- `create <CQRS_ID>` (PRODUCER, `messaging.operation.type=create`): the event is written to
  the outbox, in the request's thread and trace. Its context is injected into
  `TransportPayload.headers` (W3C `traceparent`, `tracestate` if any) and stored with the outbox
  row (`OutboxEvent.trace_context`), since the event is sent later, from another thread or
  process.
- `send <CQRS_ID>` (`messaging.operation.type=send`): the batch handed to the broker. CLIENT
  with a link to each event's creation context when there were `create` spans; PRODUCER
  otherwise (no outbox: `'on_commit'` mode, a patched `produce`), its own context then being
  injected into the events. With a single event it is also that event's child.
- `process <CQRS_ID>` (CONSUMER, `messaging.operation.type=process`): a replica applying a
  batch. It links to the creation context of every message that has one; when the batch holds
  one message, that context is also its parent, so the master's trace continues on the replica.
  A batch of several messages from several traces cannot be the child of all of them: the
  conventions make links the required relation and the parent optional.

Messages without trace headers (from a django-cqrs 3.x master) get a `process` span that starts
a trace; 3.x replicas ignore the headers. The body is never changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cqrs_core.payload import TransportPayload

if TYPE_CHECKING:
    from cqrs_core.messages import Outcome

ON = False
"""True once `enable()` found opentelemetry-api (read by every hook)."""

_R = TypeVar("_R", bound="Sequence[Outcome]")
_tracer: Any = None
_system = "cqrs"
_group: str | None = None


def missing_api_message() -> str:
    return (
        'CQRS tracing needs opentelemetry-api: pip install "cqrs-django[opentelemetry]" '
        "(or remove CQRS['tracing'])."
    )


def enabled() -> bool:
    return ON


def configure() -> None:
    """Follow `CQRS['tracing']` (called when the app is ready and when CQRS changes)."""
    from django.core.exceptions import ImproperlyConfigured

    from dj_cqrs.conf import cqrs_settings

    try:
        settings = cqrs_settings()
    except ImproperlyConfigured:  # reported by the system checks (cqrs.E0xx), not here
        disable()
        return
    if settings.get("tracing"):
        enable(settings)
    else:
        disable()


def enable(settings: Mapping[str, Any] | None = None) -> None:
    """Start tracing in this process (idempotent).

    The spans go to the global tracer provider: configure the OpenTelemetry SDK (or
    `opentelemetry-instrument`) as for any other library.

    Raises:
        ImportError: opentelemetry-api is not installed (the message says what to install).
    """
    global ON, _tracer, _system, _group
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ImportError(missing_api_message()) from exc
    from dj_cqrs.__about__ import __version__

    if settings is None:
        from dj_cqrs.conf import cqrs_settings

        settings = cqrs_settings()
    transport = settings.get("transport")
    _system = transport if isinstance(transport, str) and "." not in transport else "cqrs"
    _group = settings.get("queue") or None
    _tracer = trace.get_tracer("dj_cqrs", __version__)
    ON = True


def disable() -> None:
    global ON
    ON = False


# -- outbox rows ----------------------------------------------------------------------------


def stamp(payloads: Sequence[TransportPayload]) -> None:
    """A `create` span per event written to the outbox; its context goes into the headers.

    Called in the thread of the save, so the span is a child of the request's span. The
    payloads are the objects the fast path sends later, so their `headers` are set in place.
    """
    if not ON:
        return
    for payload in payloads:
        span = _tracer.start_span(
            f"create {payload.cqrs_id}",
            kind=_kind("PRODUCER"),
            attributes=_attributes("create", payload),
        )
        try:
            headers = {**payload.headers, **_inject(span)}
            object.__setattr__(payload, "headers", headers)  # headers are set once, here
        finally:
            span.end()


def stored(payload: TransportPayload) -> str | None:
    """The `OutboxEvent.trace_context` value of `payload`: its headers as JSON, or None."""
    return json.dumps(dict(payload.headers), separators=(",", ":")) if payload.headers else None


def restored(payload: TransportPayload, value: str | None) -> TransportPayload:
    """`payload` with the headers kept in `OutboxEvent.trace_context` (works with tracing off:
    the relay passes the context on even when it traces nothing itself)."""
    if not value:
        return payload
    try:
        headers = json.loads(value)
    except ValueError:
        return payload
    if not isinstance(headers, dict):
        return payload
    headers = {k: v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)}
    return dataclasses.replace(payload, headers=headers)


# -- publishing -----------------------------------------------------------------------------


class _Unchanged:
    """`sending()` while tracing is off: the payloads, untouched, and no span."""

    __slots__ = ("payloads",)

    def __init__(self, payloads: Sequence[TransportPayload]) -> None:
        self.payloads = payloads

    def __enter__(self) -> Sequence[TransportPayload]:
        return self.payloads

    def __exit__(self, *exc_info: object) -> None:
        return None


def sending(
    payloads: Sequence[TransportPayload],
) -> contextlib.AbstractContextManager[Sequence[TransportPayload]]:
    """`with sending(payloads) as payloads:` a `send` span around handing them to the broker.

    The payloads it gives back carry a trace context each: their own (from `stamp`), or the
    `send` span's when they had none.
    """
    if not ON:
        return _Unchanged(payloads)
    return _send_span(payloads)


@contextlib.contextmanager
def _send_span(payloads: Sequence[TransportPayload]) -> Iterator[Sequence[TransportPayload]]:

    contexts, links, parent = _received_contexts(payloads)
    first = payloads[0] if payloads else None
    attributes = _attributes("send", first, count=len(payloads))
    kind = _kind("CLIENT" if links else "PRODUCER")
    name = f"send {_destination(payloads)}"
    with _tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes, links=links
    ) as span:
        if len(links) == len(payloads):
            yield payloads
            return
        own = _inject(span)
        yield [
            p if c is not None else dataclasses.replace(p, headers={**p.headers, **own})
            for p, c in zip(payloads, contexts, strict=True)
        ]


def _received_contexts(payloads: Sequence[TransportPayload]) -> tuple[list[Any], list[Any], Any]:
    """Each payload's carried span context, a link to each, and the parent for a single one.

    The messaging conventions: a span covering several messages links to them; only a span
    for one message is its child.
    """
    from opentelemetry import trace

    contexts = [_extract(p.headers) for p in payloads]
    links = [trace.Link(c) for c in contexts if c is not None]
    parent = None
    if len(payloads) == 1 and contexts[0] is not None:
        parent = trace.set_span_in_context(trace.NonRecordingSpan(contexts[0]))
    return contexts, links, parent


# -- consuming ------------------------------------------------------------------------------


def instrument_handler(
    handler: Callable[[Sequence[TransportPayload]], _R],
) -> Callable[[Sequence[TransportPayload]], _R]:
    """The replica handler, in a `process` span per batch; `handler` itself when disabled."""
    if not ON:
        return handler
    inner = handler

    def traced(payloads: Sequence[TransportPayload]) -> _R:
        if not ON:
            return inner(payloads)
        return _process(inner, payloads)

    return traced


def _process(
    handler: Callable[[Sequence[TransportPayload]], _R], payloads: Sequence[TransportPayload]
) -> _R:
    from opentelemetry.trace import Status, StatusCode

    contexts, links, parent = _received_contexts(payloads)
    first = payloads[0] if payloads else None
    with _tracer.start_as_current_span(
        f"process {_destination(payloads)}",
        context=parent,
        kind=_kind("CONSUMER"),
        attributes=_attributes("process", first, count=len(payloads)),
        links=links,
    ) as span:
        outcomes = handler(payloads)
        kinds = [getattr(o.kind, "value", str(o.kind)) for o in outcomes]
        if len(kinds) == 1:
            span.set_attribute("cqrs.outcome", kinds[0])
        failed = [k for k in kinds if k in ("retry", "dead")]
        if failed:
            span.set_status(Status(StatusCode.ERROR, f"{len(failed)} message(s) not applied"))
        return outcomes


# -- helpers --------------------------------------------------------------------------------


def _kind(name: str) -> Any:
    from opentelemetry.trace import SpanKind

    return getattr(SpanKind, name)


def _inject(span: Any) -> dict[str, str]:
    from opentelemetry import propagate, trace

    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def _extract(headers: Mapping[str, str]) -> Any:
    """The valid span context in `headers`, or None."""
    if not headers:
        return None
    from opentelemetry import propagate, trace

    context = trace.get_current_span(propagate.extract(dict(headers))).get_span_context()
    return context if context.is_valid else None


def _destination(payloads: Sequence[TransportPayload]) -> str:
    ids = {p.cqrs_id for p in payloads}
    return next(iter(ids)) if len(ids) == 1 else "(several)"


def _attributes(
    operation: str, payload: TransportPayload | None, *, count: int = 1
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": _system,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
    }
    if payload is not None:
        attributes["messaging.destination.name"] = payload.cqrs_id
        attributes["cqrs.signal_type"] = payload.signal_type.value
        if count == 1:
            attributes["cqrs.instance_pk"] = str(payload.instance_pk)
            if payload.correlation_id is not None:
                attributes["cqrs.correlation_id"] = str(payload.correlation_id)
    if count > 1:
        attributes["messaging.batch.message_count"] = count
    if operation == "process" and _group:
        attributes["messaging.consumer.group.name"] = _group
    return attributes


__all__ = [
    "ON",
    "configure",
    "disable",
    "enable",
    "enabled",
    "instrument_handler",
    "restored",
    "sending",
    "stamp",
    "stored",
]
