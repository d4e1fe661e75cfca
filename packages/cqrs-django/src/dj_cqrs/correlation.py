"""`get_correlation_id`: the correlation id of an event, from `CQRS['master']['correlation_function']`.

Importing this module also makes `TransportPayload(...)` built without a `correlation_id` ask
that function, as django-cqrs 3.x's payload did.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings

from cqrs_core.payload import set_default_correlation
from dj_cqrs import conf

__all__ = ["get_correlation_id"]

logger = logging.getLogger("django-cqrs")


def get_correlation_id(signal_type: Any, cqrs_id: str, instance_pk: Any, queue: str | None) -> Any:
    """What the configured correlation function returns for this event; None without one.

    The setting may be a callable or its dotted path.

    Raises:
        ImproperlyConfigured: the dotted path does not import or is not callable.
    """
    func = _configured()
    if func is None:
        return None
    return func(signal_type, cqrs_id, instance_pk, queue)


def _configured() -> Callable[..., Any] | None:
    """The correlation function, read from settings on every call (tests change them in place)."""
    value = getattr(settings, "CQRS", None)
    master = value.get("master") if isinstance(value, Mapping) else None
    spec = master.get("correlation_function") if isinstance(master, Mapping) else None
    if spec is None or spec == "" or callable(spec):
        return spec or None
    return _imported(spec)


@functools.lru_cache(maxsize=8)
def _imported(path: str) -> Callable[..., Any] | None:
    return conf.import_callable(path, "CQRS['master']['correlation_function']")


def _for_payload(signal_type: Any, cqrs_id: str, instance_pk: Any, queue: str | None) -> Any:
    """The payload's default: never raises (`manage.py check` reports a bad setting, E007)."""
    try:
        return get_correlation_id(signal_type, cqrs_id, instance_pk, queue)
    except Exception:
        logger.warning("CQRS correlation_function failed; correlation_id left empty", exc_info=True)
        return None


set_default_correlation(_for_payload)
