"""Settings parsing (no broker needed): URL, vhost, TLS, legacy keys, tuning, redaction."""

from __future__ import annotations

import ssl

import pytest

from cqrs_core.exceptions import ConfigurationError
from cqrs_core.transports import get_transport_class
from cqrs_rabbitmq import RabbitMQTransport


def settings(**options):
    return RabbitMQTransport(options).settings


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://u:p@h:5673/%2F", "/"),
        ("amqp://u:p@h:5673/", "/"),
        ("amqp://u:p@h:5673//", "/"),
        ("amqp://u:p@h:5673", "/"),
        ("amqp://u:p@h:5673/billing", "billing"),
        ("amqp://u:p@h:5673/a%2Fb", "a/b"),
    ],
)
def test_url_virtual_host(url, vhost):
    """The vhost of the URL is used (upstream ignored it), kombu's `//` meaning "/"."""
    parameters = settings(url=url).parameters
    assert (parameters.host, parameters.port, parameters.virtual_host) == ("h", 5673, vhost)
    assert parameters.credentials.username == "u"


def test_amqps_verifies_against_the_host_name():
    parameters = settings(url="amqps://u:p@broker.example/vh").parameters
    assert parameters.port == 5671
    assert parameters.ssl_options.server_hostname == "broker.example"
    assert parameters.ssl_options.context.verify_mode == ssl.CERT_REQUIRED


def test_ssl_options_from_settings():
    parsed = settings(
        url="amqp://u:p@h/", rabbitmq={"ssl_options": {"verify": False, "server_hostname": "x"}}
    )
    assert parsed.parameters.ssl_options.server_hostname == "x"
    assert parsed.parameters.ssl_options.context.verify_mode == ssl.CERT_NONE
    assert parsed.display_url.startswith("amqps://")
    with pytest.raises(ConfigurationError, match="cafile"):
        settings(url="amqp://u:p@h/", ssl_options={"cafile": "/nonexistent/ca.pem"})


def test_legacy_host_port_user_password():
    parsed = settings(host="rabbit", port="5680", user="svc", password="pw")
    assert (parsed.parameters.host, parsed.parameters.port) == ("rabbit", 5680)
    assert parsed.parameters.credentials.username == "svc"
    assert parsed.display_url == "amqp://svc:***@rabbit:5680/%2F"
    assert settings().parameters.host == "localhost"


def test_tuning_keys_and_defaults():
    parsed = settings(
        url="amqp://u:p@h/",
        queue="billing",
        exchange="events",
        rabbitmq={"heartbeat": 15, "connection_timeout": 3, "blocked_connection_timeout": 20},
    )
    assert parsed.parameters.heartbeat == 15
    assert parsed.parameters.socket_timeout == 3
    assert parsed.parameters.blocked_connection_timeout == 20
    assert (parsed.delay_exchange, parsed.delay_queue) == ("events.delay", "billing.delay")
    with pytest.raises(ConfigurationError, match="heartbeet"):
        settings(rabbitmq={"heartbeet": 1})
    with pytest.raises(ConfigurationError, match="amqp://"):
        settings(url="redis://localhost")


def test_password_is_redacted():
    parsed = settings(url="amqp://u:hunter%2F2@h/")
    assert "hunter" not in parsed.display_url + repr(parsed)
    assert parsed.redact("failed for hunter/2 and hunter%2F2") == "failed for *** and ***"


def test_old_and_new_names_resolve():
    assert get_transport_class("rabbitmq") is RabbitMQTransport
    assert get_transport_class("cqrs_rabbitmq.RabbitMQTransport") is RabbitMQTransport
