"""CommonOptions: the shared keys of the user's CQRS mapping, defaults and errors."""

from __future__ import annotations

from typing import Any

import pytest

from cqrs_core.exceptions import ConfigurationError
from cqrs_core.options import CommonOptions


def test_defaults_are_django_cqrs_ones() -> None:
    options = CommonOptions.from_mapping({})
    assert options == CommonOptions()
    assert options.queue is None
    assert options.exchange == "cqrs"
    assert options.url is None
    assert options.prefetch_count == 200  # follows the batch size (3.x: 10, see below)
    assert options.max_retries == 30
    assert options.retry_delay == 2
    assert options.dead_letter_queue is None
    assert options.dead_message_ttl == 864000
    assert options.message_ttl == 86400
    assert (options.batch_size, options.batch_timeout) == (100, 0.05)


@pytest.mark.parametrize(
    ("mapping", "prefetch"),
    [
        ({"replica": {"batch_size": 500}}, 1000),
        ({"batch_size": 1}, 10),  # never below django-cqrs's 10
        ({"consumer_prefetch_count": 10}, 10),  # a value the user set is kept
        ({"consumer_prefetch_count": 7, "replica": {"batch_size": 500}}, 7),
    ],
)
def test_prefetch_follows_the_batch_size_unless_set(mapping: dict, prefetch: int) -> None:
    """With 3.x's settings (no prefetch set) batches are not capped at 3.x's prefetch of 10."""
    assert CommonOptions.from_mapping(mapping).prefetch_count == prefetch


def test_dead_letter_queue_defaults_from_queue() -> None:
    options = CommonOptions.from_mapping({"queue": "billing"})
    assert options.dead_letter_queue == "dead_letter_billing"
    assert options.require_queue() == "billing"
    assert options.require_dead_letter_queue() == "dead_letter_billing"
    custom = CommonOptions.from_mapping(
        {"queue": "billing", "replica": {"dead_letter_queue": "dlq"}}
    )
    assert custom.require_dead_letter_queue() == "dlq"


def test_every_key_is_read() -> None:
    options = CommonOptions.from_mapping(
        {
            "transport": "memory",
            "queue": "billing",
            "exchange": "events",
            "url": "amqp://u:p@h:5672/v",
            "consumer_prefetch_count": 50,
            "unrelated": object(),
            "master": {"CQRS_MESSAGE_TTL": None, "CQRS_AUTO_UPDATE_FIELDS": True},
            "replica": {
                "CQRS_MAX_RETRIES": None,
                "CQRS_RETRY_DELAY": 0.5,
                "dead_letter_queue": "dlq",
                "dead_message_ttl": None,
                "batch_size": 7,
                "batch_timeout": 0,
                "delay_queue_max_size": 1000,
            },
        }
    )
    assert options == CommonOptions(
        queue="billing",
        exchange="events",
        url="amqp://u:p@h:5672/v",
        prefetch_count=50,
        batch_size=7,
        batch_timeout=0.0,
        max_retries=None,
        retry_delay=0.5,
        dead_letter_queue="dlq",
        dead_message_ttl=None,
        message_ttl=None,
    )


def test_batch_keys_may_also_be_top_level_and_replica_wins() -> None:
    top = CommonOptions.from_mapping({"batch_size": 3, "batch_timeout": 1})
    assert (top.batch_size, top.batch_timeout) == (3, 1.0)
    both = CommonOptions.from_mapping({"batch_size": 3, "replica": {"batch_size": 4}})
    assert both.batch_size == 4


def test_empty_strings_and_sections_mean_unset() -> None:
    options = CommonOptions.from_mapping(
        {"queue": "", "exchange": "", "url": "", "master": None, "replica": {}}
    )
    assert (options.queue, options.exchange, options.url) == (None, "cqrs", None)


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"queue": 5}, "CQRS['queue'] must be a string"),
        ({"exchange": ["x"]}, "CQRS['exchange'] must be a string"),
        ({"url": b"amqp://"}, "CQRS['url'] must be a string"),
        ({"consumer_prefetch_count": 0}, "CQRS['consumer_prefetch_count'] must be an integer >= 1"),
        ({"consumer_prefetch_count": "10"}, "CQRS['consumer_prefetch_count']"),
        ({"replica": []}, "CQRS['replica'] must be a dict, got list"),
        ({"master": "x"}, "CQRS['master'] must be a dict, got str"),
        (
            {"replica": {"CQRS_MAX_RETRIES": -1}},
            "CQRS['replica']['CQRS_MAX_RETRIES'] must be an integer >= 0, got -1",
        ),
        ({"replica": {"CQRS_MAX_RETRIES": True}}, "CQRS['replica']['CQRS_MAX_RETRIES']"),
        ({"replica": {"CQRS_MAX_RETRIES": "3"}}, "CQRS['replica']['CQRS_MAX_RETRIES']"),
        ({"replica": {"CQRS_MAX_RETRIES": 2.5}}, "CQRS['replica']['CQRS_MAX_RETRIES']"),
        (
            {"replica": {"CQRS_RETRY_DELAY": -1}},
            "CQRS['replica']['CQRS_RETRY_DELAY'] must be a number of seconds from 0",
        ),
        ({"replica": {"CQRS_RETRY_DELAY": "2"}}, "CQRS['replica']['CQRS_RETRY_DELAY']"),
        ({"replica": {"CQRS_RETRY_DELAY": None}}, "CQRS['replica']['CQRS_RETRY_DELAY']"),
        (
            {"replica": {"dead_letter_queue": 1}},
            "CQRS['replica']['dead_letter_queue'] must be a string",
        ),
        ({"replica": {"dead_message_ttl": -5}}, "CQRS['replica']['dead_message_ttl']"),
        ({"replica": {"dead_message_ttl": False}}, "CQRS['replica']['dead_message_ttl']"),
        ({"replica": {"batch_size": 0}}, "CQRS['replica']['batch_size'] must be an integer >= 1"),
        ({"batch_size": 1.5}, "CQRS['batch_size'] must be an integer >= 1"),
        ({"batch_timeout": "1"}, "CQRS['batch_timeout'] must be a number"),
        ({"replica": ""}, "CQRS['replica'] must be a dict, got str"),
        ({"replica": {"batch_timeout": -0.1}}, "CQRS['replica']['batch_timeout']"),
        (
            {"master": {"CQRS_MESSAGE_TTL": "1d"}},
            "CQRS['master']['CQRS_MESSAGE_TTL'] must be a number of seconds from 0",
        ),
        ({"master": {"CQRS_MESSAGE_TTL": -1}}, "CQRS['master']['CQRS_MESSAGE_TTL']"),
        # would overflow the expiry of every message decoded without one
        ({"master": {"CQRS_MESSAGE_TTL": float("inf")}}, "CQRS['master']['CQRS_MESSAGE_TTL']"),
        ({"master": {"CQRS_MESSAGE_TTL": float("nan")}}, "CQRS['master']['CQRS_MESSAGE_TTL']"),
        ({"master": {"CQRS_MESSAGE_TTL": 10**12}}, "to 1,000,000,000, got 1000000000000"),
    ],
)
def test_bad_values_name_the_key(settings: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CommonOptions.from_mapping(settings)
    assert where in str(info.value)
    assert isinstance(info.value, ValueError)


def test_require_queue_says_how_to_set_it() -> None:
    options = CommonOptions.from_mapping({})
    with pytest.raises(ConfigurationError, match=r"CQRS\['queue'\] is not set"):
        options.require_queue()
    with pytest.raises(ConfigurationError, match=r"CQRS\['queue'\] is not set"):
        options.require_dead_letter_queue()
    assert CommonOptions(dead_letter_queue="dlq").require_dead_letter_queue() == "dlq"
