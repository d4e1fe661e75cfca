from __future__ import annotations

import pytest

from cqrs_core.exceptions import ConfigurationError
from cqrs_kafka import KafkaTransport


def make(**options):
    return KafkaTransport({"queue": "billing", **options})


def test_url_with_credentials_sets_sasl_and_hosts():
    t = make(url="kafkas://user:p%40ss@b1:9093,b2:9093")
    config = t.settings.client_config("producer")
    assert config["bootstrap.servers"] == "b1:9093,b2:9093"
    assert (config["sasl.username"], config["sasl.password"]) == ("user", "p@ss")
    assert config["security.protocol"] == "SASL_SSL"


def test_bootstrap_list_and_passthrough_per_client_kind():
    t = make(
        bootstrap_servers=["a:1", "b:2"],
        sasl_mechanism="SCRAM-SHA-512",
        kafka={
            "security.protocol": "SASL_PLAINTEXT",
            "producer": {"linger.ms": 20},
            "consumer": {"fetch.min.bytes": 10},
            "session_timeout_ms": 6000,
        },
    )
    producer, consumer = t.settings.client_config("producer"), t.settings.client_config("consumer")
    assert producer["bootstrap.servers"] == "a:1,b:2"
    assert producer["sasl.mechanism"] == consumer["sasl.mechanism"] == "SCRAM-SHA-512"
    assert producer["security.protocol"] == "SASL_PLAINTEXT"
    assert producer["linger.ms"] == 20 and "linger.ms" not in consumer
    assert consumer["session.timeout.ms"] == 6000 and consumer["fetch.min.bytes"] == 10


def test_topic_layout_uses_prefix_and_queue():
    t = make(url="h:9092", kafka={"topic_prefix": "app."})
    s = t.settings
    assert s.topic("orders") == "app.orders"
    assert s.retry_topic("billing") == "app.retry.billing"
    assert s.dead_topic("billing") == "app.dead.billing"
    assert make(url="h:9092").settings.topic("orders") == "cqrs.orders"


@pytest.mark.parametrize(
    "options, word",
    [
        ({}, "bootstrap_servers"),
        ({"url": "amqp://h"}, "kafka://"),
        ({"url": "h:1", "kafka": {"partitons": 3}}, "partitons"),
        ({"url": "h:1", "kafka": {"partitions": 0}}, "partitions"),
        ({"url": "h:1", "kafka": {"topic_prefix": "bad prefix "}}, "topic name"),
    ],
)
def test_bad_settings_name_the_key(options, word):
    with pytest.raises(ConfigurationError, match=word):
        make(**options).settings.topic("x")
