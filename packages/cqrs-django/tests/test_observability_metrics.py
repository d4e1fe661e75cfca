"""Prometheus metrics of the master, the relay and the replica handler (in this process)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from cqrs_testproject.master_app.models import Author
from cqrs_testproject.master_app.testing import use_recording
from django.db import transaction
from replica_support import data, payload

from cqrs_core.constants import SignalType
from dj_cqrs.consumer import make_handler
from dj_cqrs.observability import metrics
from dj_cqrs.outbox import background_publisher

prometheus_client = pytest.importorskip("prometheus_client")
REGISTRY = prometheus_client.REGISTRY

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def metrics_on() -> Iterator[None]:
    """Metrics enabled for one test; the process's default (off) afterwards."""
    was = metrics.ON
    metrics.enable()
    try:
        yield
    finally:
        metrics.ON = was


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_disabled_hooks_cost_nothing_and_change_nothing() -> None:
    """Off (the default): the handler is returned as it is, sends are plain calls."""
    was = metrics.ON
    metrics.ON = False
    try:

        def handler(payloads: Any) -> list[Any]:
            return []

        assert metrics.instrument_handler(handler) is handler
        assert metrics.timed_send(lambda ps: len(ps), [1, 2], "relay") == 2
        metrics.written([payload("item", data(1, 0, 0))])  # no error, nothing to count
    finally:
        metrics.ON = was


def test_replica_outcomes_lag_and_batch(metrics_on: None) -> None:
    """Applied and dead messages are counted per CQRS_ID; SAVE lag comes from cqrs_updated."""
    before_applied = value(
        "cqrs_replica_messages_total", cqrs_id="item", signal_type="SAVE", outcome="applied"
    )
    before_dead = value(
        "cqrs_replica_messages_total", cqrs_id="nope", signal_type="SAVE", outcome="dead"
    )
    before_lag = value("cqrs_replica_lag_seconds_count", cqrs_id="item")
    before_batches = value("cqrs_replica_batch_size_count")
    before_slow = value("cqrs_replica_lag_seconds_bucket", cqrs_id="item", le="60.0")
    committed = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=120)
    fresh = {"id": 1, "cqrs_revision": 0, "cqrs_updated": str(committed), "name": "one"}
    handler = make_handler()
    outcomes = handler(
        [
            payload("item", fresh),
            payload("item", {**data(2, 0, 0), "name": "two"}),
            payload("nope", data(3, 0, 0)),
        ]
    )
    assert [o.kind.value for o in outcomes] == ["applied", "applied", "dead"]
    assert (
        value("cqrs_replica_messages_total", cqrs_id="item", signal_type="SAVE", outcome="applied")
        == before_applied + 2
    )
    assert (
        value("cqrs_replica_messages_total", cqrs_id="nope", signal_type="SAVE", outcome="dead")
        == before_dead + 1
    )
    assert value("cqrs_replica_lag_seconds_count", cqrs_id="item") == before_lag + 2
    # the 120 s old one is above the 60 s bucket; the 2026 one is in the future or old: counted
    assert value("cqrs_replica_lag_seconds_bucket", cqrs_id="item", le="60.0") <= before_slow + 1
    assert value("cqrs_replica_batch_size_count") == before_batches + 1
    assert value("cqrs_replica_in_flight_messages") == 0


def test_commit_time_reads_the_wire_form() -> None:
    when = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.timezone.utc)
    assert metrics.commit_time(payload("item", {"cqrs_updated": str(when)})) == when.timestamp()
    assert metrics.commit_time(payload("item", {"cqrs_updated": "garbage"})) is None
    assert metrics.commit_time(payload("item", {}, SignalType.DELETE)) is None


def test_master_written_and_published(settings: Any, metrics_on: None) -> None:
    """A save counts one event written to the outbox and one published by the fast path."""
    background_publisher.resume()
    recorder = use_recording(settings, outbox={"grace": 0.0})
    next(recorder)
    try:
        written = value("cqrs_master_events_written_total", cqrs_id="author", signal_type="SAVE")
        sent = value(
            "cqrs_master_events_published_total",
            cqrs_id="author",
            signal_type="SAVE",
            sender="fast_path",
        )
        timed = value("cqrs_master_publish_duration_seconds_count", sender="fast_path")
        with transaction.atomic():
            Author.objects.create(name="a")
        assert background_publisher.flush(30)
        assert (
            value("cqrs_master_events_written_total", cqrs_id="author", signal_type="SAVE")
            == written + 1
        )
        assert (
            value(
                "cqrs_master_events_published_total",
                cqrs_id="author",
                signal_type="SAVE",
                sender="fast_path",
            )
            == sent + 1
        )
        assert value("cqrs_master_publish_duration_seconds_count", sender="fast_path") > timed
    finally:
        next(recorder, None)


def test_failed_sends_are_counted_by_error_class(metrics_on: None) -> None:
    before = value(
        "cqrs_master_events_publish_failed_total", sender="relay", reason="ConnectionError"
    )

    def broken(payloads: Any) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        metrics.timed_send(broken, [payload("item", data(1, 0, 0))] * 3, "relay")
    assert (
        value("cqrs_master_events_publish_failed_total", sender="relay", reason="ConnectionError")
        == before + 3
    )
