"""`get_correlation_id`: the correlation id of an event, from `CQRS['master']['correlation_function']`."""

from __future__ import annotations

from typing import Any

from dj_cqrs import conf

__all__ = ["get_correlation_id"]


def get_correlation_id(signal_type: Any, cqrs_id: str, instance_pk: Any, queue: str | None) -> Any:
    """What the configured correlation function returns for this event; None without one.

    The setting may be a callable or its dotted path.

    Raises:
        ImproperlyConfigured: the dotted path does not import or is not callable.
    """
    func = conf.import_callable(
        conf.master_settings().get("correlation_function"),
        "CQRS['master']['correlation_function']",
    )
    if func is None:
        return None
    return func(signal_type, cqrs_id, instance_pk, queue)
