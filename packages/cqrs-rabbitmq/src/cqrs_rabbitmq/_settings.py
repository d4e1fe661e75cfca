"""The RabbitMQ-specific settings: connection parameters, timeouts and retry topology names.

Everything is read from the user's `CQRS` mapping: `url` (or the old `host`/`port`/`user`/
`password` keys) plus an optional `CQRS['rabbitmq']` section for tuning. The password is kept
out of every string this module builds (`display_url`, `redact`).
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
from pika.connection import Parameters

from cqrs_core.exceptions import ConfigurationError
from cqrs_core.options import (
    INVALID_VALUE,
    CommonOptions,
    Problem,
    unknown_keys,
    url_problems,
    value_problems,
)

DEFAULTS: Mapping[str, float] = {
    "heartbeat": 60,
    "connection_timeout": 10,
    "blocked_connection_timeout": 60,
    "publish_timeout": 10,
    "reconnect_delay": 0.5,
    "reconnect_max_delay": 30,
}
"""Tuning keys of `CQRS['rabbitmq']` and their defaults (seconds)."""

_TUNING_KEYS = frozenset(DEFAULTS) | {"ssl_options", "delay_exchange", "delay_queue"}
_SSL_KEYS = frozenset(
    {
        "cafile",
        "capath",
        "cadata",
        "certfile",
        "keyfile",
        "key_password",
        "server_hostname",
        "verify",
    }
)

OPTION_KEYS: Mapping[str, frozenset[str]] = {
    "": frozenset({"rabbitmq", "ssl_options", "virtual_host"}),
    "rabbitmq": _TUNING_KEYS,
    "rabbitmq.ssl_options": _SSL_KEYS,
    "ssl_options": _SSL_KEYS,
}
"""The `CQRS` keys this transport reads beyond the common ones (`BaseTransport.option_keys`)."""

SCHEMES = frozenset({"amqp", "amqps"})


def check_options(options: Mapping[str, Any]) -> list[Problem]:
    """What `manage.py check` reports about the RabbitMQ settings (nothing is connected)."""
    found = url_problems(
        options,
        SCHEMES,
        transport="rabbitmq",
        example="amqp://user:password@rabbitmq:5672/%2F",
        default="amqp://guest:guest@localhost:5672/ (vhost '/')",
    )
    section = options.get("rabbitmq") or {}
    if not isinstance(section, Mapping):
        return [*found, Problem(INVALID_VALUE, "CQRS['rabbitmq'] must be a dict.")]
    found += unknown_keys(section, _TUNING_KEYS, "rabbitmq")
    for where, ssl_value in (
        ("rabbitmq.ssl_options", section.get("ssl_options")),
        ("ssl_options", options.get("ssl_options")),
    ):
        if isinstance(ssl_value, Mapping):
            found += unknown_keys(ssl_value, _SSL_KEYS, where)
    return found or value_problems(options, RabbitMQSettings.from_options)


@dataclasses.dataclass(frozen=True)
class RabbitMQSettings:
    """Parsed connection settings; build with `from_options`."""

    parameters: Parameters = dataclasses.field(repr=False)
    display_url: str
    """The broker address with the password replaced by `***` (safe for logs)."""
    password: str = dataclasses.field(repr=False)
    publish_timeout: float
    """Longest a produce call may take, reconnects included, before `PublishError`."""
    reconnect_delay: float
    reconnect_max_delay: float
    delay_exchange: str
    """Direct exchange retries are published to; it routes them into the delay queue."""
    delay_queue: str | None
    """Where retries wait their delay (per-message TTL), then dead-letter back to the exchange."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any], common: CommonOptions) -> RabbitMQSettings:
        section = options.get("rabbitmq") or {}
        if not isinstance(section, Mapping):
            raise ConfigurationError("CQRS['rabbitmq'] must be a dict of connection settings.")
        unknown = unknown_keys(section, _TUNING_KEYS, "rabbitmq")
        if unknown:
            raise ConfigurationError(f"{unknown[0].message} {unknown[0].hint}")
        tuning = {
            key: _seconds(section.get(key, default), key) for key, default in DEFAULTS.items()
        }
        if common.url:
            parameters, password = _from_url(common.url)
        else:
            parameters, password = _from_legacy(options)
        ssl_options = section.get("ssl_options", options.get("ssl_options"))
        if ssl_options is not None:
            parameters.ssl_options = _ssl_options(ssl_options, parameters.host)
        elif parameters.ssl_options is not None and parameters.ssl_options.server_hostname is None:
            # amqps:// without options: verify the certificate against the URL's host name.
            parameters.ssl_options = pika.SSLOptions(
                parameters.ssl_options.context, server_hostname=parameters.host
            )
        parameters.heartbeat = int(tuning["heartbeat"])
        parameters.socket_timeout = tuning["connection_timeout"]
        parameters.stack_timeout = tuning["connection_timeout"]
        parameters.blocked_connection_timeout = tuning["blocked_connection_timeout"] or None
        parameters.connection_attempts = 1
        delay_queue = section.get("delay_queue") or (
            f"{common.queue}.delay" if common.queue else None
        )
        return cls(
            parameters=parameters,
            display_url=_display_url(parameters),
            password=password,
            publish_timeout=tuning["publish_timeout"],
            reconnect_delay=max(tuning["reconnect_delay"], 0.01),
            reconnect_max_delay=max(tuning["reconnect_max_delay"], 0.01),
            delay_exchange=section.get("delay_exchange") or f"{common.exchange}.delay",
            delay_queue=delay_queue,
        )

    def redact(self, text: object) -> str:
        """`str(text)` with the password masked, for messages that quote broker errors."""
        message = str(text)
        if self.password:
            message = message.replace(self.password, "***")
            message = message.replace(quote(self.password, safe=""), "***")
        return message


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigurationError(f"CQRS['rabbitmq'][{key!r}] must be a number >= 0, got {value!r}.")
    return float(value)


def _from_url(url: str) -> tuple[Parameters, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ConfigurationError(
            f"CQRS['url'] must start with amqp:// or amqps:// for the rabbitmq transport, "
            f"got scheme {parts.scheme!r}."
        )
    password = unquote(parts.password or "")
    try:
        parameters = pika.URLParameters(url)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(f"CQRS['url'] is invalid: {_mask(str(exc), password)}") from None
    if parts.path == "//" or not parameters.virtual_host:
        parameters.virtual_host = "/"  # kombu style `amqp://host//` means the "/" vhost
    return parameters, password


def _from_legacy(options: Mapping[str, Any]) -> tuple[Parameters, str]:
    host = options.get("host") or "localhost"
    port = options.get("port") or 5672
    user = options.get("user") or "guest"
    password = options.get("password")
    password = "guest" if password is None else str(password)
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ConfigurationError(f"CQRS['port'] must be an integer, got {port!r}.") from None
    parameters = pika.ConnectionParameters(
        host=host,
        port=port,
        virtual_host=options.get("virtual_host") or "/",
        credentials=pika.PlainCredentials(str(user), password),
    )
    return parameters, password


def _ssl_options(value: Any, host: str) -> pika.SSLOptions:
    if isinstance(value, pika.SSLOptions):
        return value
    if isinstance(value, ssl.SSLContext):
        return pika.SSLOptions(value, server_hostname=host)
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "CQRS['rabbitmq']['ssl_options'] must be a dict (cafile, capath, certfile, keyfile, "
            "server_hostname, verify), an ssl.SSLContext or a pika.SSLOptions."
        )
    known = _SSL_KEYS
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigurationError(
            f"Unknown key(s) in ssl_options: {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
    try:
        context = ssl.create_default_context(
            cafile=value.get("cafile"), capath=value.get("capath"), cadata=value.get("cadata")
        )
        if value.get("certfile"):
            context.load_cert_chain(
                value["certfile"], value.get("keyfile"), value.get("key_password")
            )
    except (OSError, ssl.SSLError) as exc:
        files = {k: value[k] for k in ("cafile", "capath", "certfile", "keyfile") if value.get(k)}
        raise ConfigurationError(
            f"ssl_options could not be loaded ({exc}); check the files {files}."
        ) from None
    if value.get("verify", True) is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return pika.SSLOptions(context, server_hostname=value.get("server_hostname") or host)


def _display_url(parameters: Parameters) -> str:
    scheme = "amqps" if parameters.ssl_options else "amqp"
    user = getattr(parameters.credentials, "username", "")
    netloc = f"{quote(user, safe='')}:***@{parameters.host}:{parameters.port}"
    return urlunsplit((scheme, netloc, "/" + quote(parameters.virtual_host, safe=""), "", ""))


def _mask(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text
