"""`manage.py check` catches settings mistakes: unknown keys, urls, models without CQRS_ID."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.db import models
from django.test.utils import isolate_apps

from dj_cqrs.checks import check_model_ids, check_settings

BASE = {"transport": "memory", "url": "memory://checks", "queue": "q"}
RABBIT = {"transport": "rabbitmq", "url": "amqp://guest:guest@127.0.0.1:5672/%2F", "queue": "q"}


def found(settings: Any, value: dict[str, Any]) -> list[Any]:
    settings.CQRS = value
    return check_settings()


def one(settings: Any, value: dict[str, Any]) -> Any:
    messages = found(settings, value)
    assert len(messages) == 1, [(m.id, m.msg) for m in messages]
    return messages[0]


# -- unknown keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "where", "guess"),
    [
        ({"batchsize": 10}, "CQRS['batchsize']", "batch_size"),
        ({"URL": "amqp://x"}, "CQRS['URL']", "url"),
        (
            {"replica": {"CQRS_MAX_RETRY": 3}},
            "CQRS['replica']['CQRS_MAX_RETRY']",
            "CQRS_MAX_RETRIES",
        ),
        (
            {"master": {"CQRS_MESAGE_TTL": 5}},
            "CQRS['master']['CQRS_MESAGE_TTL']",
            "CQRS_MESSAGE_TTL",
        ),
        ({"master": {"meta_fuction": None}}, "CQRS['master']['meta_fuction']", "meta_function"),
    ],
)
def test_unknown_key_is_an_error_with_did_you_mean(
    settings: Any, extra: dict[str, Any], where: str, guess: str
) -> None:
    error = one(settings, {**BASE, **extra})
    assert isinstance(error, Error) and error.id == "cqrs.E010"
    assert where in error.msg and f"Did you mean {guess!r}?" in error.hint


def test_unknown_key_without_a_close_match_lists_the_known_ones(settings: Any) -> None:
    error = one(settings, {**BASE, "replica": {"zzzzzz": 1}})
    assert error.id == "cqrs.E010" and "CQRS_RETRY_DELAY" in error.hint


def test_other_transports_keys_are_not_unknown(settings: Any) -> None:
    """Switching `transport` must not turn the other transport's section into errors."""
    assert found(settings, {**BASE, "kafka": {"partitions": 3}, "rabbitmq": {}}) == []


@pytest.mark.parametrize(
    ("transport", "section", "guess"),
    [
        ("rabbitmq", {"rabbitmq": {"hearbeat": 5}}, "heartbeat"),
        ("rabbitmq", {"rabbitmq": {"ssl_options": {"cafle": "/ca.pem"}}}, "cafile"),
        ("kafka", {"kafka": {"partitons": 3}}, "partitions"),
    ],
)
def test_transport_sections(
    settings: Any, transport: str, section: dict[str, Any], guess: str
) -> None:
    url = "kafka://127.0.0.1:9092" if transport == "kafka" else RABBIT["url"]
    error = one(settings, {**RABBIT, "transport": transport, "url": url, **section})
    assert error.id == "cqrs.E010" and f"Did you mean {guess!r}?" in error.hint


def test_kafka_dotted_properties_are_accepted(settings: Any) -> None:
    value = {**BASE, "transport": "kafka", "url": "kafka://127.0.0.1:9092"}
    assert found(settings, {**value, "kafka": {"security.protocol": "PLAINTEXT"}}) == []


def test_transport_value_errors_surface_at_check_time(settings: Any) -> None:
    error = one(settings, {**RABBIT, "rabbitmq": {"heartbeat": "often"}})
    assert error.id == "cqrs.E005" and "heartbeat" in error.msg
    error = one(settings, {**RABBIT, "transport": "kombu", "transport_options": [1]})
    assert error.id == "cqrs.E005" and "transport_options" in error.msg


# -- url ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["rabbitmq", "kombu"])
def test_no_url_is_a_warning(settings: Any, transport: str) -> None:
    value = {"transport": transport, "queue": "q"}
    warning = one(settings, value)
    assert isinstance(warning, Warning) and warning.id == "cqrs.W010"
    assert "localhost" in warning.msg and "CQRS['url']" in warning.hint
    assert found(settings, {**value, "host": "rabbit.internal"}) == []  # the 1.x keys count


@pytest.mark.parametrize(
    ("transport", "url", "hint"),
    [
        ("rabbitmq", "amqps//user:secret@host:5671/", "amqps://"),
        ("rabbitmq", "rabbit.internal:5672", "amqp"),
        ("rabbitmq", "amqq://user:secret@host/", "Did you mean amqp://?"),
        ("rabbitmq", "redis://host:6379/0", "amqp, amqps"),
        ("kombu", "redis//host:6379/0", "redis://"),
        ("kombu", "reddis://host:6379/0", "Did you mean redis://?"),
        ("kafka", "kafka//broker:9092", "kafka://"),
        ("kafka", "http://broker:9092", "kafka, kafkas"),
    ],
)
def test_malformed_url(settings: Any, transport: str, url: str, hint: str) -> None:
    error = one(settings, {"transport": transport, "url": url, "queue": "q"})
    assert error.id == "cqrs.E011" and hint in error.hint
    assert "secret" not in error.msg + error.hint


def test_kafka_needs_brokers(settings: Any) -> None:
    error = one(settings, {"transport": "kafka", "queue": "q"})
    assert error.id == "cqrs.E005" and "bootstrap_servers" in error.msg


def test_valid_urls_pass(settings: Any) -> None:
    for value in (
        RABBIT,
        {**RABBIT, "url": "amqps://u:p@host:5671/vhost"},
        {**RABBIT, "transport": "kombu", "url": "redis://127.0.0.1:6379/0"},
        {**RABBIT, "transport": "kafka", "url": "broker1:9092,broker2:9092"},
        {**RABBIT, "transport": "kafka", "url": "kafkas://u:p@broker1:9093"},
    ):
        assert found(settings, value) == [], value


# -- 3.x compatibility --------------------------------------------------------------------

SETTINGS_3X = {
    "transport": "dj_cqrs.transport.RabbitMQTransport",
    "url": "amqp://guest:guest@127.0.0.1:5672/",
    "host": "127.0.0.1",
    "port": 5672,
    "user": "guest",
    "password": "guest",
    "exchange": "cqrs",
    "queue": "replica",
    "consumer_prefetch_count": 10,
    "master": {
        "CQRS_AUTO_UPDATE_FIELDS": False,
        "CQRS_MESSAGE_TTL": 86400,
        "correlation_function": lambda *args, **kwargs: "corr",
        "meta_function": "cqrs_testproject.master_app.cqrs_hooks.golden_meta",
    },
    "replica": {
        "CQRS_MAX_RETRIES": 30,
        "CQRS_RETRY_DELAY": 2,
        "delay_queue_max_size": 1000,
        "dead_letter_queue": "dead_letter_replica",
        "dead_message_ttl": 864000,
        "CQRS_QUERY_TIMEOUT": 10000,
        "CQRS_LOG_TIMED_OUT_QUERIES": True,
        "CQRS_QUERY_LOGGER": "django-cqrs",
    },
}
"""Every key django-cqrs 3.x read from settings.CQRS."""


@pytest.mark.parametrize(
    "transport",
    ["dj_cqrs.transport.RabbitMQTransport", "dj_cqrs.transport.KombuTransport", "rabbitmq"],
)
def test_complete_3x_settings_have_no_error(settings: Any, transport: str) -> None:
    messages = found(settings, {**SETTINGS_3X, "transport": transport})
    assert [(m.id, m.msg) for m in messages if isinstance(m, Error)] == []


def test_legacy_transport_class_skips_transport_checks(settings: Any) -> None:
    """A 3.x-style class reads settings.CQRS itself: our transport checks don't apply."""
    value = {
        "transport": "legacy_transports.RecordingLegacyTransport",
        "url": "amqps//host",
        "queue": "q",
        "rabbitmq": {"hearbeat": 5},
        "my_transport_setting": 1,
    }
    [warning] = found(settings, value)
    assert isinstance(warning, Warning) and warning.id == "cqrs.W011"
    assert "my_transport_setting" in warning.msg


# -- models -------------------------------------------------------------------------------


class TestModelsWithoutCqrsId:
    """Models are defined in an isolated app registry, so the project's stays untouched."""

    @pytest.fixture(autouse=True)
    def isolated(self) -> Iterator[None]:
        with isolate_apps(
            "cqrs_testproject.master_app", "cqrs_testproject.replica_app"
        ) as registry:
            self.registry = registry
            yield

    def messages(self) -> list[Any]:
        configs = [self.registry.get_app_config(n) for n in ("master_app", "replica_app")]
        return check_model_ids(app_configs=configs)

    def test_master_model_without_cqrs_id(self) -> None:
        from dj_cqrs.mixins import MasterMixin
        from dj_cqrs.registries import MasterRegistry

        class NoIdMaster(MasterMixin):
            name = models.CharField(max_length=10)

            class Meta:
                app_label = "master_app"

        [error] = self.messages()
        assert error.id == "cqrs.E012" and error.obj is NoIdMaster
        assert "CQRS_ID = 'noidmaster'" in error.hint
        assert NoIdMaster not in MasterRegistry.models.values()

    def test_replica_model_without_cqrs_id_is_a_check_not_a_traceback(self) -> None:
        from dj_cqrs.mixins import ReplicaMixin
        from dj_cqrs.registries import ReplicaRegistry

        class NoIdReplica(ReplicaMixin):  # used to raise ConfigurationError right here
            name = models.CharField(max_length=10)

            class Meta:
                app_label = "replica_app"

        [error] = self.messages()
        assert error.id == "cqrs.E013" and error.obj is NoIdReplica
        assert NoIdReplica not in ReplicaRegistry.models.values()

    def test_models_with_ids_pass(self) -> None:
        from dj_cqrs.mixins import MasterMixin

        class WithId(MasterMixin):
            CQRS_ID = "checks_with_id"

            class Meta:
                app_label = "master_app"

        from dj_cqrs.registries import MasterRegistry

        try:
            assert self.messages() == []
        finally:
            MasterRegistry.models.pop("checks_with_id", None)


def test_project_models_pass() -> None:
    assert check_model_ids() == []


def test_transport_without_option_keys_gets_warnings_for_unknown_top_level_keys(
    settings: Any,
) -> None:
    """A third-party transport that declares no `option_keys` may read any key itself."""
    from cqrs_core.transports import memory

    class Undeclared(memory.MemoryTransport):
        option_keys = None

    path = f"{__name__}.Undeclared"
    globals()["Undeclared"] = Undeclared
    try:
        message = one(settings, {**BASE, "transport": path, "stream_prefix": "x"})
        assert message.id == "cqrs.W011"
        assert "stream_prefix" in message.msg
    finally:
        del globals()["Undeclared"]
