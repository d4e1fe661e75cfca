"""The metrics and the one-line hooks that the consumer, the publisher and the relay call.

Every hook first checks the module flag `ON`, so that a process without prometheus_client, or
one that did not enable metrics, pays one function call and nothing else. Labels are bounded:
CQRS_ID, signal type, outcome, sender and an error's class name; never a pk or a queue.
"""

from __future__ import annotations

import collections
import datetime
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from cqrs_core.messages import Outcome
    from cqrs_core.payload import TransportPayload

ON = False
"""True once `enable()` created the metrics (read by every hook)."""

WORKER_ENV = "CQRS_METRICS_MULTIPROCESS"
"""Set by the `cqrs_consume -w N` supervisor: its workers write their metrics to files."""

_T = TypeVar("_T")
_R = TypeVar("_R", bound="Sequence[Outcome]")
_M: Any = None
"""The metric objects (a `_Metrics`), once enabled."""

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def missing_client_message() -> str:
    return (
        'CQRS metrics need prometheus_client: pip install "cqrs-django[prometheus]" '
        "(or remove CQRS['metrics'] / --metrics-port)."
    )


def enabled() -> bool:
    return ON


def enable() -> None:
    """Create the metrics in this process (idempotent); hooks start counting.

    Raises:
        ImportError: prometheus_client is not installed (the message says what to install).
    """
    global ON, _M
    if ON:
        return
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(missing_client_message()) from exc
    if _M is None:  # metrics register once per process; enable() after an off is fine
        _M = _Metrics()
    ON = True


def worker_started() -> None:
    """In a worker of `cqrs_consume -w N`: enable metrics if the supervisor collects them."""
    if os.environ.get(WORKER_ENV) and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        enable()


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.written = Counter(
            "cqrs_master_events_written",
            "Events written to the outbox (in the transaction of the change).",
            ["cqrs_id", "signal_type"],
        )
        self.published = Counter(
            "cqrs_master_events_published",
            "Events accepted by the broker.",
            ["cqrs_id", "signal_type", "sender"],
        )
        self.publish_failed = Counter(
            "cqrs_master_events_publish_failed",
            "Events the broker did not accept (they stay in the outbox), by error class.",
            ["sender", "reason"],
        )
        self.publish_seconds = Histogram(
            "cqrs_master_publish_duration_seconds",
            "Time to publish one batch of events (successful or not).",
            ["sender"],
        )
        self.set_aside = Counter(
            "cqrs_outbox_rows_set_aside",
            "Outbox rows left for later: to the relay by the fast path, or held by the relay.",
            ["reason"],
        )
        self.received = Counter(
            "cqrs_replica_messages_received",
            "Messages handed to the replica handler.",
            ["cqrs_id"],
        )
        self.handled = Counter(
            "cqrs_replica_messages",
            "Handler verdicts: applied, skipped, retry or dead.",
            ["cqrs_id", "signal_type", "outcome"],
        )
        self.dead_letters = Counter(
            "cqrs_replica_dead_letters",
            "Messages stored as dead letters, whoever decided it (handler, retry limit, "
            "undecodable body).",
            ["cqrs_id"],
        )
        self.skipped = Counter(
            "cqrs_replica_messages_skipped",
            "Messages the replica rules skipped (counted as applied in cqrs_replica_messages): "
            "stale (older than the row or its tombstone) or duplicate.",
            ["cqrs_id", "reason"],
        )
        self.apply_seconds = Histogram(
            "cqrs_replica_apply_duration_seconds", "Time to apply one batch of messages."
        )
        self.batch_size = Histogram(
            "cqrs_replica_batch_size", "Messages per applied batch.", buckets=_BATCH_BUCKETS
        )
        self.in_flight = Gauge(
            "cqrs_replica_in_flight_messages",
            "Messages being applied now.",
            multiprocess_mode="livesum",
        )
        self.lag = Histogram(
            "cqrs_replica_lag_seconds",
            "From the master's commit (the body's cqrs_updated) to the replica's apply, for "
            "applied SAVE events; includes clock skew between the two hosts.",
            ["cqrs_id"],
            buckets=_LAG_BUCKETS,
        )


# -- master and relay ------------------------------------------------------------------------


def written(payloads: Sequence[Any]) -> None:
    """Events just written to the outbox."""
    if not ON:
        return
    for labels, count in _grouped(payloads):
        child = _written.get(labels)
        if child is None:
            child = _written[labels] = _M.written.labels(*labels)
        child.inc(count)


_written: dict[tuple[str, str], Any] = {}
"""`written`'s counters by label values: `labels()` takes a lock and checks every value, on
every save (issue 16). Metrics are created once per process, so the children never change."""


def timed_send(send: Callable[[Sequence[Any]], _T], payloads: Sequence[Any], sender: str) -> _T:
    """`send(payloads)`, counted and timed; exceptions are counted and raised again."""
    if not ON:
        return send(payloads)
    started = time.perf_counter()
    try:
        result = send(payloads)
    except Exception as exc:
        _M.publish_seconds.labels(sender).observe(time.perf_counter() - started)
        _M.publish_failed.labels(sender, type(exc).__name__).inc(len(payloads))
        raise
    _M.publish_seconds.labels(sender).observe(time.perf_counter() - started)
    for (cqrs_id, signal), count in _grouped(payloads):
        _M.published.labels(cqrs_id, signal, sender).inc(count)
    return result


def timed(send: Callable[[Sequence[Any]], _T], sender: str) -> Callable[[Sequence[Any]], _T]:
    """`send`, counted and timed as `timed_send` does; `send` itself when metrics are off."""
    if not ON:
        return send
    return lambda payloads: timed_send(send, payloads, sender)


def set_aside(reason: str, count: int = 1) -> None:
    """Outbox rows left for later (`reason`: a short fixed word, never an error text)."""
    if ON and count:
        _M.set_aside.labels(reason).inc(count)


# -- replica ---------------------------------------------------------------------------------


def instrument_handler(
    handler: Callable[[Sequence[TransportPayload]], _R],
) -> Callable[[Sequence[TransportPayload]], _R]:
    """The replica handler, counting and timing each batch; `handler` itself when disabled."""
    if not ON:
        return handler
    inner = handler

    def measured(payloads: Sequence[TransportPayload]) -> _R:
        metrics = _M
        metrics.in_flight.inc(len(payloads))
        started = time.perf_counter()
        try:
            outcomes = inner(payloads)
        finally:
            metrics.in_flight.dec(len(payloads))
        metrics.apply_seconds.observe(time.perf_counter() - started)
        metrics.batch_size.observe(len(payloads))
        now = time.time()
        counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        lags: dict[str, list[float]] = {}
        for payload, outcome in zip(payloads, outcomes, strict=False):
            kind = getattr(outcome.kind, "value", str(outcome.kind))
            signal = _signal(payload)
            counts[payload.cqrs_id, signal, kind] += 1  # one inc per label set, not per message
            if kind == "applied" and signal == "SAVE":
                committed = commit_time(payload)
                if committed is not None:
                    lags.setdefault(payload.cqrs_id, []).append(max(now - committed, 0.0))
        for (cqrs_id, signal, kind), count in counts.items():
            metrics.received.labels(cqrs_id).inc(count)
            metrics.handled.labels(cqrs_id, signal, kind).inc(count)
        for cqrs_id, values in lags.items():
            lag = metrics.lag.labels(cqrs_id)
            for value in values:
                lag.observe(value)
        return outcomes

    return measured


def dead_lettered(settled: Any) -> None:
    """A message the transport is storing as a dead letter."""
    if ON:
        payload = getattr(settled, "payload", None)
        _M.dead_letters.labels(payload.cqrs_id if payload is not None else "").inc()


def replica_skipped(cqrs_id: str, reason: str) -> None:
    """A message skipped by the replica rules (`reason`: stale or duplicate; see
    `dj_cqrs.replica.decide`, which calls it once the skip is committed)."""
    if ON:
        _M.skipped.labels(cqrs_id, reason).inc()


def commit_time(payload: Any) -> float | None:
    """The master's commit clock of a SAVE (`instance_data['cqrs_updated']`), as a timestamp."""
    value = (payload.instance_data or {}).get("cqrs_updated")
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.timestamp()


def _grouped(payloads: Sequence[Any]) -> Any:
    """((cqrs_id, signal type), count) pairs: one `inc` per label set, not per event."""
    if len(payloads) == 1:  # a single save: skip the Counter
        return [((payloads[0].cqrs_id, _signal(payloads[0])), 1)]
    return collections.Counter((p.cqrs_id, _signal(p)) for p in payloads).items()


def _signal(payload: Any) -> str:
    signal = payload.signal_type
    return str(getattr(signal, "value", signal))
