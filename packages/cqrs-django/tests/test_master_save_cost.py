"""What the save's caches (issue 17) must not change: settings read live, counts, stored keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cqrs_testproject.master_app.models import Author
from cqrs_testproject.master_app.testing import use_recording
from django.core.exceptions import ImproperlyConfigured

from dj_cqrs import conf
from dj_cqrs.observability import metrics
from dj_cqrs.outbox import background_publisher
from dj_cqrs.outbox.models import OutboxEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorder(settings: Any) -> Iterator[Any]:
    background_publisher.resume()
    yield from use_recording(settings, outbox={"grace": 0.0, "keep_days": 1})
    background_publisher.resume()


def test_master_setting_reads_changes_made_in_place(settings: Any) -> None:
    settings.CQRS = {"transport": "memory", "master": {}}
    assert conf.master_setting("meta_function") is None
    settings.CQRS["master"]["meta_function"] = "x.y"  # no settings_changed: no new generation
    assert conf.master_setting("meta_function") == "x.y"
    settings.CQRS = {"transport": "memory"}
    assert conf.master_setting("meta_function") is None


def test_master_setting_rejects_what_master_settings_rejects(settings: Any) -> None:
    settings.CQRS = {"transport": "memory", "master": "nope"}
    with pytest.raises(ImproperlyConfigured):
        conf.master_setting("meta_function")
    settings.CQRS = ["nope"]
    with pytest.raises(ImproperlyConfigured):
        conf.master_setting("meta_function")
    settings.CQRS = {"transport": "memory", "master": None}
    assert conf.master_setting("meta_function") is None


def correlation(*args: Any) -> str:
    return "corr"


def test_correlation_function_set_in_place_is_used_by_the_next_save(
    recorder: Any, settings: Any
) -> None:
    """A correlation function added to the settings dict in place reaches the next save."""
    Author.objects.create(name="before")
    assert background_publisher.flush(30)
    settings.CQRS["master"]["correlation_function"] = correlation
    try:
        Author.objects.create(name="after")
        assert background_publisher.flush(30)
    finally:
        del settings.CQRS["master"]["correlation_function"]
    assert [m.data.get("correlation_id") for m in recorder.sent()] == [None, "corr"]


def test_autocommit_saves_count_written_events(recorder: Any) -> None:
    """Every stored event is counted, the one-statement save's on PostgreSQL included."""
    prometheus_client = pytest.importorskip("prometheus_client")
    was = metrics.ON
    metrics.enable()
    try:
        labels = {"cqrs_id": "author", "signal_type": "SAVE"}
        name = "cqrs_master_events_written_total"
        before = prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0
        author = Author.objects.create(name="a")
        author.name = "b"
        author.save()
        after = prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0
    finally:
        metrics.ON = was
    assert after == before + 2


def test_repeated_saves_store_each_row_key(recorder: Any) -> None:
    """Statements kept per shape still carry each save's own key and revision."""
    authors = [Author.objects.create(name=f"n{i}") for i in range(3)]
    for author in authors:
        author.name = "changed"
        author.save()
    rows = list(OutboxEvent.objects.order_by("id").values_list("instance_pk", flat=True))
    assert rows == [str(a.pk) for a in authors] * 2
    assert background_publisher.flush(30)
    sent = [
        (m.data["instance_pk"], m.data["instance_data"]["cqrs_revision"]) for m in recorder.sent()
    ]
    assert sent == [(a.pk, 0) for a in authors] + [(a.pk, 1) for a in authors]
