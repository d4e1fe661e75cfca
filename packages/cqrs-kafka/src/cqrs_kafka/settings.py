"""The Kafka part of the `CQRS` settings, and the librdkafka configs built from it.

```python
CQRS = {
    "transport": "kafka",
    "url": "kafka://broker1:9092,broker2:9092",   # or "bootstrap_servers": [...]
    "queue": "billing",                           # replica service = consumer group
    "kafka": {
        "topic_prefix": "cqrs.",                  # topics: cqrs.<CQRS_ID>, cqrs.retry.<queue>, ...
        "partitions": 6,
        "replication_factor": 3,
        "security.protocol": "SASL_SSL",          # dotted keys go to every client
        "producer": {"linger.ms": 10},            # and these to one kind of client only
        "consumer": {"session.timeout.ms": 10000},
        "admin": {},
    },
}
```
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from typing import Any

from cqrs_core.exceptions import ConfigurationError
from cqrs_core.options import (
    INVALID_URL,
    INVALID_VALUE,
    CommonOptions,
    Problem,
    unknown_keys,
    url_problems,
    value_problems,
)

_OWN_KEYS = frozenset(
    {
        "topic_prefix",
        "partitions",
        "replication_factor",
        "create_topics",
        "publish_timeout",
        "session_timeout_ms",
        "producer",
        "consumer",
        "admin",
    }
)
_SECURITY_KEYS = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_username": "sasl.username",
    "sasl_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
}
"""Top-level `CQRS` keys accepted as aliases of librdkafka security settings."""

OPTION_KEYS: Mapping[str, frozenset[str]] = {
    "": frozenset({"kafka", "bootstrap_servers", *_SECURITY_KEYS}),
    "kafka": _OWN_KEYS,
}
"""The `CQRS` keys this transport reads beyond the common ones (`BaseTransport.option_keys`).

`CQRS['kafka']` also takes any dotted librdkafka property (`"security.protocol"`)."""

SCHEMES = frozenset({"kafka", "kafkas"})


def check_options(options: Mapping[str, Any]) -> list[Problem]:
    """What `manage.py check` reports about the Kafka settings (nothing is connected)."""
    found: list[Problem] = []
    url = options.get("url")
    if isinstance(url, str) and "://" not in url and ("//" in url or url.split(":")[0] in SCHEMES):
        found.append(
            Problem(
                INVALID_URL,
                "CQRS['url'] looks like a kafka:// URL without its '://'.",
                "Write it as kafka://host:9092[,host:9092] (kafkas:// for TLS), or list the "
                "brokers without a scheme: 'host:9092,host2:9092'.",
            )
        )
    elif isinstance(url, str) and "://" in url:
        found += url_problems(options, SCHEMES, transport="kafka", example="kafka://broker:9092")
    section = options.get("kafka") or {}
    if not isinstance(section, Mapping):
        return [*found, Problem(INVALID_VALUE, "CQRS['kafka'] must be a dict of Kafka options.")]
    undotted = {k: v for k, v in section.items() if not (isinstance(k, str) and "." in k)}
    found += unknown_keys(undotted, _OWN_KEYS, "kafka")
    return found or value_problems(options, KafkaSettings.from_options)


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Everything the Kafka transport needs beside `CommonOptions`."""

    bootstrap_servers: str
    topic_prefix: str
    partitions: int
    replication_factor: int
    create_topics: bool
    publish_timeout: float
    """Seconds a produced message may wait for its delivery report before it is an error."""
    common_config: Mapping[str, Any]
    producer_config: Mapping[str, Any]
    consumer_config: Mapping[str, Any]
    admin_config: Mapping[str, Any]
    dead_letter_name: str | None
    """`CQRS['replica']['dead_letter_queue']` when set explicitly."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any], common: CommonOptions) -> KafkaSettings:
        section = options.get("kafka") or {}
        if not isinstance(section, Mapping):
            raise ConfigurationError("CQRS['kafka'] must be a dict of Kafka options.")
        unknown = unknown_keys(
            {k: v for k, v in section.items() if "." not in k}, _OWN_KEYS, "kafka"
        )
        if unknown:
            raise ConfigurationError(
                f"{unknown[0].message} {unknown[0].hint} Other librdkafka settings go in "
                "as dotted properties, such as 'security.protocol'."
            )
        servers, from_url = _bootstrap(options, common.url)
        shared = {**from_url, **_security(options)}
        shared.update({k: v for k, v in section.items() if "." in k})
        replica = options.get("replica") or {}
        return cls(
            bootstrap_servers=servers,
            topic_prefix=_prefix(section.get("topic_prefix", f"{common.exchange}.")),
            partitions=_int(section.get("partitions", 3), "partitions", 1),
            replication_factor=_int(
                section.get("replication_factor", -1), "replication_factor", -1
            ),
            create_topics=bool(section.get("create_topics", True)),
            publish_timeout=_positive(section.get("publish_timeout", 30.0), "publish_timeout"),
            common_config=shared,
            producer_config=_client(section, "producer"),
            consumer_config=_client(section, "consumer", section.get("session_timeout_ms")),
            admin_config=_client(section, "admin"),
            dead_letter_name=replica.get("dead_letter_queue")
            if isinstance(replica, Mapping)
            else None,
        )

    def client_config(self, kind: str) -> dict[str, Any]:
        """The librdkafka config of one client kind: shared keys, then the kind's own."""
        own = {"producer": self.producer_config, "consumer": self.consumer_config}.get(
            kind, self.admin_config
        )
        return {"bootstrap.servers": self.bootstrap_servers, **self.common_config, **own}

    # -- topic layout ----------------------------------------------------------------------

    def topic(self, cqrs_id: str) -> str:
        """Every change of one CQRS_ID: `<prefix><cqrs_id>`."""
        return _checked_topic(f"{self.topic_prefix}{cqrs_id}")

    def retry_topic(self, queue: str) -> str:
        """Delayed retries of one replica service: `<prefix>retry.<queue>`."""
        return _checked_topic(f"{self.topic_prefix}retry.{queue}")

    def dead_topic(self, queue: str) -> str:
        """Dead letters of one replica service: `<prefix>dead.<queue>` unless configured."""
        if self.dead_letter_name:
            return _checked_topic(f"{self.topic_prefix}{self.dead_letter_name}")
        return _checked_topic(f"{self.topic_prefix}dead.{queue}")


def dead_letter_group(queue: str) -> str:
    """Consumer group that remembers how far the dead letters of `queue` were purged."""
    return f"{queue}.dead-letters"


def _bootstrap(options: Mapping[str, Any], url: str | None) -> tuple[str, dict[str, Any]]:
    servers = options.get("bootstrap_servers")
    if servers:
        if isinstance(servers, (list, tuple)):
            servers = ",".join(str(s) for s in servers)
        if not isinstance(servers, str):
            raise ConfigurationError("CQRS['bootstrap_servers'] must be a string or a list.")
        return servers, {}
    if not url:
        raise ConfigurationError(
            "The kafka transport needs brokers: set CQRS['url'] = 'kafka://host:9092' "
            "or CQRS['bootstrap_servers'] = ['host:9092']."
        )
    if "://" not in url:
        return url, {}
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("kafka", "kafkas"):
        raise ConfigurationError(
            f"CQRS['url'] must start with kafka:// or kafkas:// (TLS), got {url!r}."
        )
    extra: dict[str, Any] = {}
    hosts = parsed.netloc.rpartition("@")[2]
    secure = parsed.scheme == "kafkas"
    if parsed.username:
        extra["sasl.username"] = urllib.parse.unquote(parsed.username)
        extra["sasl.password"] = urllib.parse.unquote(parsed.password or "")
        extra["sasl.mechanism"] = "PLAIN"
        extra["security.protocol"] = "SASL_SSL" if secure else "SASL_PLAINTEXT"
    elif secure:
        extra["security.protocol"] = "SSL"
    if not hosts:
        raise ConfigurationError(f"CQRS['url'] {url!r} names no broker host.")
    return hosts, extra


def _security(options: Mapping[str, Any]) -> dict[str, Any]:
    return {prop: options[key] for key, prop in _SECURITY_KEYS.items() if options.get(key)}


def _client(section: Mapping[str, Any], kind: str, session_ms: Any = None) -> dict[str, Any]:
    value = section.get(kind) or {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"CQRS['kafka'][{kind!r}] must be a dict of librdkafka options.")
    config = dict(value)
    if session_ms is not None:
        config.setdefault("session.timeout.ms", _int(session_ms, "session_timeout_ms", 1))
    return config


def _prefix(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"CQRS['kafka']['topic_prefix'] must be a string, got {value!r}.")
    return value


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"CQRS['kafka'][{key!r}] must be an integer >= {minimum}.")
    return value


def _positive(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"CQRS['kafka'][{key!r}] must be a number of seconds > 0.")
    return float(value)


def _checked_topic(name: str) -> str:
    if len(name) > 249 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in name):
        raise ConfigurationError(
            f"{name!r} is not a valid Kafka topic name (only letters, digits, '.', '_' and '-', "
            "at most 249 characters): change CQRS['kafka']['topic_prefix'], the queue or CQRS_ID."
        )
    return name
