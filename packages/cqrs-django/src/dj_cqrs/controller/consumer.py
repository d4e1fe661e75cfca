"""django-cqrs 3.x's consumer controller: apply one payload to its replica model and return
what the model's `cqrs_save` / `cqrs_delete` returned.

3.x transports, test suites and custom consumers call these directly (`cqrs_consume` workers use
the batched `dj_cqrs.consumer` instead). As in 3.x: a bad signal type is logged and gives None,
an unknown CQRS_ID gives None, a SYNC aimed elsewhere at a `CQRS_ONLY_DIRECT_SYNCS` model gives
True without applying, and a database error is logged and gives None.
"""

from __future__ import annotations

import copy
import logging
from contextlib import ExitStack
from typing import Any

from django.db import Error, transaction

from cqrs_core.constants import SignalType
from dj_cqrs import conf
from dj_cqrs.registries import ReplicaRegistry

logger = logging.getLogger("django-cqrs")

__all__ = ["consume", "route_signal_to_replica_model"]


def consume(payload: Any) -> Any:
    """Apply `payload` (a `TransportPayload` received from a master); see the module doc."""
    payload = copy.deepcopy(payload)
    return route_signal_to_replica_model(
        payload.signal_type,
        payload.cqrs_id,
        payload.instance_data,
        previous_data=payload.previous_data,
        meta=payload.meta,
        queue=payload.queue,
    )


def route_signal_to_replica_model(
    signal_type: Any,
    cqrs_id: str,
    instance_data: dict[str, Any],
    previous_data: dict[str, Any] | None = None,
    meta: Any = None,
    queue: str | None = None,
) -> Any:
    """Create, update or delete the replica row of one event.

    Args:
        signal_type: `SignalType` or its value (`"SAVE"`, `"DELETE"`, `"SYNC"`).
        cqrs_id: The replica model's CQRS_ID.
        instance_data: The master's serialized instance.
        previous_data: Previous values of the master's tracked fields.
        meta: The event's metadata (passed to models with `CQRS_META = True`).
        queue: The replica queue a SYNC was aimed at (None: every replica).
    """
    try:
        signal = SignalType(signal_type)
    except ValueError:
        logger.error('Bad signal type "%s" for CQRS_ID "%s".', signal_type, cqrs_id)
        return None
    model = ReplicaRegistry.get_model_by_cqrs_id(cqrs_id)
    if model is None:
        logger.warning('No replica model has CQRS_ID "%s": the event is ignored.', cqrs_id)
        return None
    if signal is SignalType.SYNC and _only_direct_syncs(model) and queue != _own_queue():
        return True
    uses_db = not getattr(model, "CQRS_NO_DB_OPERATIONS", False)
    kwargs: dict[str, Any] = {"meta": meta} if getattr(model, "CQRS_META", False) else {}
    from dj_cqrs.consumer import _alias, _refresh_connections, _set_query_timeout

    try:
        with ExitStack() as stack:
            if uses_db:
                _refresh_connections()  # drop broken connections, as the consumer does
                alias = _alias(model)
                stack.enter_context(transaction.atomic(using=alias))
                _set_query_timeout(alias)  # CQRS_QUERY_TIMEOUT, for this transaction only
            if signal is SignalType.DELETE:
                return model.cqrs_delete(instance_data, **kwargs)
            if signal is SignalType.SYNC:
                kwargs["sync"] = True
            return model.cqrs_save(instance_data, previous_data=previous_data, **kwargs)
    except Error as exc:
        pk_name = getattr(getattr(getattr(model, "_meta", None), "pk", None), "name", "id")
        logger.error(
            "%s\nCQRS %s error: pk = %s, cqrs_revision = %s (%s).",
            exc,
            signal.value,
            instance_data.get(pk_name),
            instance_data.get("cqrs_revision"),
            cqrs_id,
        )
        from dj_cqrs.logger import log_timed_out_queries

        log_timed_out_queries(exc, model)
        return None


def _only_direct_syncs(model: Any) -> bool:
    if getattr(model, "CQRS_ONLY_DIRECT_SYNCS", False):
        return True
    return bool(conf.replica_settings().get("CQRS_ONLY_DIRECT_SYNCS", False))


def _own_queue() -> str | None:
    return conf.cqrs_settings().get("queue")
