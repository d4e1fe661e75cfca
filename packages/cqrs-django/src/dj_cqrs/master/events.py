"""Event building: the payload of a SAVE, DELETE or SYNC of a master instance, queued until commit.

Called by the model hooks (`dj_cqrs.master.signals`, `mixins`); hands the events to the
transaction's group (`dj_cqrs.master.pending`). Instance data is serialized later, when the
event is sent (`dj_cqrs.outbox.committed`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from django.db.models import Model
from django.utils import timezone

from cqrs_core.constants import SignalType
from cqrs_core.payload import TransportPayload
from dj_cqrs import conf
from dj_cqrs.master import pending
from dj_cqrs.master.serialization import deferred_data, is_deferred, meta_for, wire_pk


def row_key(instance: Model) -> Hashable:
    """Key under which SAVE and DELETE events of one row replace each other in a transaction."""
    return ("row", instance.CQRS_ID, wire_pk(instance.pk))  # type: ignore[attr-defined]


def sync_key(instance: Model, queue: str | None) -> Hashable:
    return ("sync", instance.CQRS_ID, wire_pk(instance.pk), queue)  # type: ignore[attr-defined]


def produces(instance: Any) -> bool:
    return bool(getattr(instance, "CQRS_PRODUCE", False)) and bool(
        getattr(instance, "CQRS_ID", None)
    )


def payload_for(
    instance: Any,
    signal_type: SignalType,
    instance_data: dict[str, Any],
    previous_data: dict[str, Any] | None,
    *,
    using: str,
    queue: str | None = None,
    sync: bool = False,
) -> TransportPayload:
    """The payload of one event; `expires` is set when it is published."""
    cqrs_id = instance.CQRS_ID
    correlation = conf.import_callable(
        conf.master_setting("correlation_function"), "CQRS['master']['correlation_function']"
    )
    correlation_id = correlation(signal_type, cqrs_id, instance.pk, queue) if correlation else None
    # deferred data: the meta function is called when the data is serialized (`meta_for`)
    meta = (
        None
        if is_deferred(instance_data)
        else meta_for(instance, signal_type, instance_data, previous_data)
    )
    return TransportPayload(
        signal_type=signal_type,
        cqrs_id=cqrs_id,
        instance_data=instance_data,
        instance_pk=wire_pk(instance.pk),
        queue=queue,
        previous_data=previous_data,
        correlation_id=correlation_id,
        meta=meta,
    )


_FROM_TRACKER: Any = object()


def save_event(
    instance: Any,
    using: str,
    *,
    created: bool,
    previous: Any = _FROM_TRACKER,
    fresh: bool = False,
) -> tuple[Hashable, pending.Entry]:
    """SAVE of a created or updated row (previous values from the tracker unless given).

    The instance data is left to be serialized when the event is sent (`deferred_data`).
    `fresh` means the instance was just loaded with its relations: at commit it is serialized
    as it is instead of being reloaded for a CQRS_SERIALIZER.
    """
    if previous is _FROM_TRACKER:
        previous = instance.get_tracked_fields_data()
    data = deferred_data(instance)
    payload = payload_for(instance, SignalType.SAVE, data, previous, using=using)
    return row_key(instance), pending.Entry(payload, instance, created, fresh=fresh)


def delete_event(instance: Any, using: str) -> tuple[Hashable, pending.Entry]:
    """DELETE: `{"id", "cqrs_revision": stored + 1, "cqrs_updated"}` plus optional `custom`."""
    revision = instance.__dict__.get("cqrs_revision")
    data: dict[str, Any] = {
        "id": wire_pk(instance.pk),
        "cqrs_revision": (revision if isinstance(revision, int) else 0) + 1,
        "cqrs_updated": str(timezone.now()),
    }
    custom = instance.get_custom_cqrs_delete_data()
    if custom:
        data["custom"] = custom
    payload = payload_for(instance, SignalType.DELETE, data, None, using=using)
    return row_key(instance), pending.Entry(payload, instance)


def sync_event(
    instance: Any, using: str, queue: str | None, *, deferred: bool = False
) -> tuple[Hashable, pending.Entry]:
    """SYNC of the instance as it is (revision unchanged), for every replica or one queue.

    `deferred`: serialize it when it is sent (from the committed row), not now.
    """
    data = deferred_data(instance) if deferred else instance.to_cqrs_dict(using, sync=True)
    previous = instance.get_tracked_fields_data()
    payload = payload_for(
        instance, SignalType.SYNC, data, previous, using=using, queue=queue or None, sync=True
    )
    return sync_key(instance, queue), pending.Entry(payload, instance, fresh=True)


def enqueue(using: str, events: Iterable[tuple[Hashable, pending.Entry]]) -> None:
    pending.enqueue(using, list(events))
