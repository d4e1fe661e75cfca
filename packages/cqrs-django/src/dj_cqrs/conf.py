"""Access to `settings.CQRS`, read lazily so nothing is resolved at import time.

The transport instance is cached per process and per thread (broker clients such as pika are not
thread-safe) and rebuilt after `fork()`, since a connection inherited from the parent must not be
shared with it.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from cqrs_core.constants import DEFAULT_MESSAGE_TTL
from cqrs_core.exceptions import ConfigurationError, TransportLoadError
from cqrs_core.payload import set_default_ttl
from cqrs_core.transports import BaseTransport, get_transport_class

logger = logging.getLogger("django-cqrs")

__all__ = [
    "LEGACY_TRANSPORTS",
    "LegacyTransportConfigured",
    "cqrs_settings",
    "get_transport",
    "import_callable",
    "legacy_transport_class",
    "master_setting",
    "master_settings",
    "replica_settings",
    "reset_transport",
    "transport_class",
    "transport_options",
    "transport_spec",
]

LEGACY_TRANSPORTS: dict[str, str] = {
    "dj_cqrs.transport.RabbitMQTransport": "rabbitmq",
    "dj_cqrs.transport.rabbit_mq.RabbitMQTransport": "rabbitmq",
    "dj_cqrs.transport.KombuTransport": "kombu",
    "dj_cqrs.transport.kombu.KombuTransport": "kombu",
    "dj_cqrs.transport.KafkaTransport": "kafka",
    "dj_cqrs.transport.kafka.KafkaTransport": "kafka",
    "dj_cqrs.transport.MemoryTransport": "memory",
}
"""django-cqrs dotted paths that users already have in settings, and the transport they mean."""


def cqrs_settings() -> dict[str, Any]:
    """A copy of `settings.CQRS` (empty when unset).

    Raises:
        ImproperlyConfigured: `CQRS` is set but is not a dict.
    """
    value = getattr(settings, "CQRS", None)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(
            f"settings.CQRS must be a dict, got {type(value).__name__}; "
            "e.g. CQRS = {'transport': 'rabbitmq', 'url': 'amqp://guest:guest@localhost:5672/'}."
        )
    return dict(value)


def _section(name: str) -> dict[str, Any]:
    value = cqrs_settings().get(name) or {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"CQRS[{name!r}] must be a dict, got {type(value).__name__}.")
    return dict(value)


def master_settings() -> dict[str, Any]:
    """`CQRS['master']` (empty when unset)."""
    return _section("master")


def master_setting(key: str) -> Any:
    """`CQRS['master'][key]` (None when unset), without `master_settings()`'s copies: saves
    read it, and tests change `settings.CQRS` in place, so it is read anew every time.

    Raises:
        ImproperlyConfigured: `CQRS` or `CQRS['master']` is set but is not a dict.
    """
    value = getattr(settings, "CQRS", None)
    master = value.get("master") if isinstance(value, Mapping) else None
    if isinstance(master, Mapping):
        return master.get(key)
    if master is None and (value is None or isinstance(value, Mapping)):
        return None
    return master_settings().get(key)  # raises with the message of a bad `CQRS`/`master`


def replica_settings() -> dict[str, Any]:
    """`CQRS['replica']` (empty when unset)."""
    return _section("replica")


def message_ttl() -> float | None:
    """Seconds a published message lives (`CQRS['master']['CQRS_MESSAGE_TTL']`; None: forever)."""
    ttl: float | None = master_settings().get("CQRS_MESSAGE_TTL", DEFAULT_MESSAGE_TTL)
    return ttl


def _settings_message_ttl() -> float | None:
    return message_ttl() if settings.configured else DEFAULT_MESSAGE_TTL


# `TransportPayload.from_message(dct)` without `expires`: CQRS_MESSAGE_TTL, as in django-cqrs 3.x.
set_default_ttl(_settings_message_ttl)


def auto_update_fields() -> bool:
    """Whether `save(update_fields=...)` also updates the CQRS fields and publishes by default."""
    return bool(master_settings().get("CQRS_AUTO_UPDATE_FIELDS", False))


def transport_spec() -> str:
    """`CQRS['transport']`: a transport name (`"rabbitmq"`) or a dotted path.

    Raises:
        ImproperlyConfigured: the key is missing or not a string.
    """
    spec = cqrs_settings().get("transport")
    if spec is None or spec == "":
        raise ImproperlyConfigured(
            "CQRS['transport'] is not set; e.g. CQRS = {'transport': 'rabbitmq', ...} "
            "(installed transports: python -m cqrs_core transports)."
        )
    if isinstance(spec, type):  # a class given directly: accept it as its dotted path
        spec = f"{spec.__module__}.{spec.__qualname__}"
    if not isinstance(spec, str):
        raise ImproperlyConfigured(f"CQRS['transport'] must be a string, got {spec!r}.")
    return spec


def transport_class() -> type[BaseTransport]:
    """The cqrs-core transport class that `CQRS['transport']` selects.

    Accepts entry-point names (`rabbitmq`, `kombu`, `kafka`, `memory`), the dotted paths of
    django-cqrs (`dj_cqrs.transport.RabbitMQTransport`...), a dotted path to one of the
    `dj_cqrs.transport` facade classes (or a subclass), and a dotted path to a cqrs-core
    `BaseTransport` subclass.

    Raises:
        TransportNotFound: no transport has that name (the message suggests a fix).
        TransportLoadError: the transport exists but cannot be imported or is not valid.
        ImproperlyConfigured: the setting is missing.
    """
    legacy_cls = legacy_transport_class()
    if legacy_cls is not None:
        raise LegacyTransportConfigured(legacy_cls)
    spec = transport_spec()
    legacy = LEGACY_TRANSPORTS.get(spec)
    if legacy is not None:
        return get_transport_class(legacy)
    if "." in spec or ":" in spec:
        target = _import_path(spec)
        name = getattr(target, "transport_name", None)
        if (
            isinstance(target, type)
            and isinstance(name, str)
            and hasattr(target, "clean_connection")
        ):
            return get_transport_class(name)  # a dj_cqrs.transport facade (or a user subclass)
    return get_transport_class(spec)


class LegacyTransportConfigured(ConfigurationError):
    """`CQRS['transport']` names a 3.x-style class, and the caller needs a cqrs-core transport."""

    def __init__(self, cls: type) -> None:
        self.transport = cls
        path = f"{cls.__module__}.{cls.__qualname__}"
        super().__init__(
            f"CQRS['transport'] is {path}, a django-cqrs 3.x style transport class "
            "(a dj_cqrs.transport.base.BaseTransport subclass): events are sent with "
            f"{cls.__qualname__}.produce(payload) and cqrs_consume calls "
            f"{cls.__qualname__}.consume(), but this feature needs a cqrs-core transport. "
            "Set CQRS['transport'] to a transport name such as 'rabbitmq' (list them with "
            "`python -m cqrs_core transports`) to use it."
        )


def is_legacy_transport(target: object) -> TypeGuard[type]:
    """Whether `target` is a 3.x-style class: a `dj_cqrs.transport.base.BaseTransport`
    subclass that is not one of our facades (those name a cqrs-core plugin)."""
    from dj_cqrs.transport.base import BaseTransport as LegacyBase

    return (
        isinstance(target, type)
        and issubclass(target, LegacyBase)
        and not target.is_facade
        and not isinstance(getattr(target, "transport_name", None), str)
    )


_legacy_cache: tuple[int, object, type | None] | None = None


def legacy_transport_class() -> type | None:
    """The 3.x-style class `CQRS['transport']` names (dotted path or class), else None.

    None for transport names, our facades and cqrs-core classes. Called at every commit, so the
    answer is kept until the setting's value or the settings generation changes.
    """
    global _legacy_cache
    value = getattr(settings, "CQRS", None)
    spec = value.get("transport") if isinstance(value, Mapping) else None
    cached = _legacy_cache
    if cached is not None and cached[0] == _generation and cached[1] == spec:
        return cached[2]
    found: type | None = None
    if isinstance(spec, type):
        found = spec if is_legacy_transport(spec) else None
    elif isinstance(spec, str) and spec not in LEGACY_TRANSPORTS and ("." in spec or ":" in spec):
        try:
            target = _import_path(spec)
        except TransportLoadError:
            target = None  # transport_class() reports it with the details
        found = target if is_legacy_transport(target) else None
    _legacy_cache = (_generation, spec, found)
    return found


def _import_path(path: str) -> object:
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise TransportLoadError(
            f"Cannot import transport {path!r}: {exc}. Use a transport name such as 'rabbitmq' "
            "or the dotted path of a cqrs_core BaseTransport subclass."
        ) from exc


def transport_options() -> dict[str, Any]:
    """The `CQRS` mapping handed to the transport (it reads only the keys it knows)."""
    return cqrs_settings()


def import_callable(value: object, setting: str) -> Callable[..., Any] | None:
    """Resolve a setting that holds a callable or its dotted path (None stays None).

    Raises:
        ImproperlyConfigured: the path cannot be imported or the object is not callable.
    """
    if value is None or value == "":
        return None
    target = value
    if isinstance(value, str):
        module, _, attr = value.rpartition(".")
        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"{setting} = {value!r} cannot be imported ({exc}); give a callable or the "
                "dotted path of one, e.g. 'myproject.cqrs.get_meta'."
            ) from exc
    if not callable(target):
        raise ImproperlyConfigured(f"{setting} must be callable, got {target!r}.")
    return target


# -- the transport instance ----------------------------------------------------------------


class _Cache(threading.local):
    pid: int = 0
    generation: int = -1
    transport: BaseTransport | None = None


_cache = _Cache()
_lock = threading.Lock()
_generation = 0


def get_transport() -> BaseTransport:
    """The transport built from settings, one per process and thread, created on first use."""
    pid = os.getpid()
    cache = _cache
    if cache.transport is not None:
        if cache.pid != pid:
            cache.transport = None  # inherited through fork(): the parent still owns it
        elif cache.generation != _generation or cache.transport.closed:
            _close_quietly(cache.transport)
            cache.transport = None
    if cache.transport is None:
        cls = transport_class()
        cache.transport = cls(transport_options())
        cache.pid = pid
        cache.generation = _generation
    return cache.transport


def generation() -> int:
    """Incremented by `reset_transport` (a CQRS setting changed): lets callers drop caches."""
    return _generation


def reset_transport() -> None:
    """Close this thread's transport and make every thread build a new one on next use."""
    global _generation
    with _lock:
        _generation += 1
    transport, _cache.transport = _cache.transport, None
    if transport is not None and _cache.pid == os.getpid():
        _close_quietly(transport)


def discard_transport() -> None:
    """Close this thread's transport only (after a failure); other threads keep theirs."""
    transport, _cache.transport = _cache.transport, None
    if transport is not None and _cache.pid == os.getpid():
        _close_quietly(transport)


def _close_quietly(transport: BaseTransport) -> None:
    try:
        transport.close()
    except Exception:  # closing a broken connection must not hide the real problem
        logger.warning("Closing the CQRS transport failed", exc_info=True)


def _after_fork_in_child() -> None:
    global _generation
    _cache.transport = None
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
