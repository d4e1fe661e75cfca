"""System checks (`cqrs.E00x`) on bad settings and models."""

from __future__ import annotations

from typing import Any

import pytest

from dj_cqrs.checks import check_master_models, check_settings


def ids(settings: Any, value: Any) -> list[str]:
    settings.CQRS = value
    return [e.id for e in check_settings()]


def test_project_settings_pass(settings: Any) -> None:
    assert check_settings() == []
    assert check_master_models() == []


def test_missing_or_not_a_dict(settings: Any) -> None:
    del settings.CQRS
    assert [e.id for e in check_settings()] == ["cqrs.E001"]
    assert ids(settings, "rabbitmq") == ["cqrs.E001"]


def test_transport_missing_unknown_unloadable(settings: Any) -> None:
    assert ids(settings, {"queue": "q"}) == ["cqrs.E002"]
    settings.CQRS = {"transport": "memroy", "queue": "q"}
    [error] = check_settings()
    assert error.id == "cqrs.E003" and "Did you mean 'memory'" in error.hint
    assert ids(settings, {"transport": "nope.nope.Transport", "queue": "q"}) == ["cqrs.E003"]


def test_replica_models_need_a_queue(settings: Any) -> None:
    assert ids(settings, {"transport": "memory"}) == ["cqrs.E004"]


@pytest.mark.parametrize(
    "bad",
    [
        {"replica": {"CQRS_MAX_RETRIES": -1}},
        {"replica": {"CQRS_RETRY_DELAY": "2"}},
        {"consumer_prefetch_count": 0},
        {"master": {"CQRS_MESSAGE_TTL": "a day"}},
        {"replica": "not a dict"},
        {"master": {"CQRS_AUTO_UPDATE_FIELDS": "yes"}},
    ],
)
def test_bad_values(settings: Any, bad: dict[str, Any]) -> None:
    found = ids(settings, {"transport": "memory", "queue": "q", **bad})
    assert found == ["cqrs.E005"]


def test_callables(settings: Any) -> None:
    base = {"transport": "memory", "queue": "q"}
    assert ids(settings, {**base, "master": {"meta_function": "no.such.func"}}) == ["cqrs.E006"]
    assert ids(settings, {**base, "master": {"meta_function": 42}}) == ["cqrs.E006"]
    assert ids(settings, {**base, "master": {"correlation_function": "x"}}) == ["cqrs.E007"]
    ok = {
        "meta_function": "cqrs_testproject.master_app.cqrs_hooks.golden_meta",
        "correlation_function": len,
    }
    assert ids(settings, {**base, "master": ok}) == []


def test_model_options(monkeypatch: Any) -> None:
    from cqrs_testproject.master_app.models import Author, Order

    from dj_cqrs.master.serialization import serializer_class, tracked_fields

    monkeypatch.setattr(Author, "CQRS_TRACKED_FIELDS", ["nope"])
    monkeypatch.setattr(Author, "CQRS_FIELDS", ["id", "missing"])
    monkeypatch.setattr(Order, "CQRS_SERIALIZER", "no.such.Serializer")
    tracked_fields.cache_clear()
    serializer_class.cache_clear()
    try:
        errors = check_master_models()
    finally:
        tracked_fields.cache_clear()
    assert {e.id for e in errors} == {"cqrs.E008"}
    text = " ".join(e.msg for e in errors)
    assert "nope" in text and "missing" in text and "no.such.Serializer" in text
