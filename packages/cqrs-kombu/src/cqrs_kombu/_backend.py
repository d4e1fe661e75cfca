"""Turn the user's `CQRS` settings into kombu connection arguments, per backend."""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cqrs_core.exceptions import ConfigurationError
from cqrs_core.options import INVALID_VALUE, Problem, url_problems
from cqrs_kombu import _filesystem

AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
REDIS_SCHEMES = frozenset({"redis", "rediss", "sentinel"})
DEFAULT_URL = "amqp://guest:guest@localhost:5672//"
REDIS_DEFAULTS: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 30,
    # What a dead (SIGKILLed, OOM-killed) consumer held comes back after this many seconds
    # (kombu: 1 h). Live consumers renew their holdings, so it only bounds crash recovery
    # and the length of one handler call (a longer one is redelivered: a duplicate).
    "visibility_timeout": 60,
    # A consumer killed during a restore sweep blocks other sweeps this long (kombu: 300 s).
    "unacked_mutex_expire": 30,
}


@dataclasses.dataclass(frozen=True)
class Backend:
    """Where and how to connect: the kombu URL, transport options and backend kind."""

    url: str
    kind: str
    """`amqp`, `redis`, `filesystem` or `other` (SQS, ... reached through kombu)."""
    transport_options: dict[str, Any]
    transport: Any = None
    """A kombu transport class overriding the URL's scheme (the safe filesystem one)."""
    connect_timeout: float = 5.0

    @property
    def is_amqp(self) -> bool:
        return self.kind == "amqp"

    def connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "transport_options": dict(self.transport_options),
            "connect_timeout": self.connect_timeout,
        }
        if self.transport is not None:
            kwargs["transport"] = self.transport
        return kwargs


def backend_from_options(options: Mapping[str, Any]) -> Backend:
    """Read `url` (or the deprecated host/port/user/password), `transport_options`."""
    url = options.get("url") or _legacy_url(options)
    user_options = options.get("transport_options") or {}
    if not isinstance(user_options, Mapping):
        raise ConfigurationError("CQRS['transport_options'] must be a dict of kombu options.")
    scheme = urlsplit(url).scheme.lower().split("+")[0]
    transport_options: dict[str, Any] = {}
    transport = None
    if scheme in AMQP_SCHEMES:
        kind = "amqp"
        transport_options["confirm_publish"] = True
    elif scheme in REDIS_SCHEMES:
        kind = "redis"
        transport_options.update(REDIS_DEFAULTS)
    elif scheme == "filesystem":
        kind = "filesystem"
        transport_options.update(_filesystem_options(url, user_options))
        transport = _filesystem.Transport
        url = "filesystem://"
    else:
        kind = "other"
    transport_options.update(user_options)
    if kind == "filesystem":
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            os.makedirs(transport_options[key], exist_ok=True)
    timeout = options.get("connect_timeout", 5.0)
    backend = Backend(url, kind, transport_options, transport, float(timeout))
    if transport is None:
        require_client_library(kind, url)
    return backend


OPTION_KEYS: Mapping[str, frozenset[str]] = {
    "": frozenset({"transport_options", "connect_timeout"}),
}
"""The `CQRS` keys this transport reads beyond the common ones (`BaseTransport.option_keys`).

`transport_options` is kombu's own dict (any key kombu's backend accepts), so its keys are not
checked here."""


def check_options(options: Mapping[str, Any]) -> list[Problem]:
    """What `manage.py check` reports about the kombu settings (no folder, no connection)."""
    from kombu.transport import TRANSPORT_ALIASES

    found = url_problems(
        options,
        {alias.lower() for alias in TRANSPORT_ALIASES},
        transport="kombu",
        example="amqp://user:password@rabbitmq:5672//",
        default=DEFAULT_URL,
    )
    if not isinstance(options.get("transport_options") or {}, Mapping):
        found.append(
            Problem(INVALID_VALUE, "CQRS['transport_options'] must be a dict of kombu options.")
        )
    timeout = options.get("connect_timeout", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        found.append(
            Problem(
                INVALID_VALUE,
                f"CQRS['connect_timeout'] must be a number of seconds > 0, got {timeout!r}.",
            )
        )
    if found:
        return found
    url = options.get("url") or _legacy_url(options)
    kind = _kind(urlsplit(url).scheme.lower().split("+")[0])
    if kind == "filesystem":
        try:
            _filesystem_options(url, options.get("transport_options") or {})
        except ConfigurationError as exc:
            return [Problem(INVALID_VALUE, str(exc))]
        return []
    try:
        require_client_library(kind, url)
    except ConfigurationError as exc:
        return [Problem(INVALID_VALUE, str(exc))]
    except Exception as exc:  # noqa: BLE001 (kombu rejects the URL itself: report, never crash)
        return [Problem(INVALID_VALUE, f"kombu cannot use CQRS['url']: {exc}")]
    return []


def _kind(scheme: str) -> str:
    if scheme in AMQP_SCHEMES:
        return "amqp"
    if scheme in REDIS_SCHEMES:
        return "redis"
    return "filesystem" if scheme == "filesystem" else "other"


CLIENT_LIBRARIES: dict[str, tuple[str, str]] = {"redis": ("redis", "cqrs-kombu[redis]")}
"""Backend kind -> (client module, the distribution whose install brings it)."""


def require_client_library(kind: str, url: str) -> None:
    """Fail now, with the `pip install` line, when the URL's kombu client library is missing.

    kombu imports a backend's client lazily and fails only when it connects, so a consumer
    would otherwise take the missing library for a broker outage and retry forever. Building
    kombu's transport object checks the rest without touching the network.

    Raises:
        ConfigurationError: the library (or one of its own dependencies) is not installed.
    """
    from kombu import Connection

    module, distribution = CLIENT_LIBRARIES.get(kind, ("", ""))
    try:
        if module:
            importlib.import_module(module)
        Connection(url).transport  # noqa: B018 - instantiating it is the check
    except ImportError as exc:
        scheme = urlsplit(url).scheme.lower()
        fix = (
            f'pip install "{distribution}"'
            if distribution
            else "install the client library that kombu names above"
        )
        raise ConfigurationError(
            f"CQRS['url'] uses kombu's {scheme!r} backend, but its client library cannot be "
            f"imported ({exc}). Run: {fix}"
        ) from exc


def _legacy_url(options: Mapping[str, Any]) -> str:
    host = options.get("host")
    if not host:
        return DEFAULT_URL
    user = options.get("user", "guest")
    password = options.get("password", "guest")
    port = options.get("port", 5672)
    return f"amqp://{user}:{password}@{host}:{port}//"


def _filesystem_options(url: str, user_options: Mapping[str, Any]) -> dict[str, Any]:
    """`filesystem:///srv/cqrs` shares one folder; otherwise the options must name folders."""
    folder = url[len("filesystem://") :].split("?")[0]
    folder_in = user_options.get("data_folder_in") or folder
    folder_out = user_options.get("data_folder_out") or folder
    if not folder_in or not folder_out:
        raise ConfigurationError(
            "The kombu filesystem transport needs a shared folder: set CQRS['url'] to "
            "'filesystem:///path/to/folder', or CQRS['transport_options'] to "
            "{'data_folder_in': ..., 'data_folder_out': ...}."
        )
    base = folder or folder_out
    return {
        "data_folder_in": folder_in,
        "data_folder_out": folder_out,
        "processed_folder": os.path.join(base, "processed"),
        "control_folder": os.path.join(base, "control"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
