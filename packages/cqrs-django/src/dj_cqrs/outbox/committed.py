"""Serialize stored events when they are sent, not in the request.

A SAVE or SYNC is stored with `deferred_data` instead of its instance data. The background
publisher of the committing process gets, with each fresh row, a copy of the instance taken at
commit (`Source`) and serializes it as django-cqrs 3.x did at commit: the instance as it is, or,
for a CQRS_SERIALIZER, reloaded from the database, so the serializer sees the whole committed
transaction. Whoever sends a row without such a copy (the relay, the admin action) loads the
instances of a batch with one query per model, through `relate_cqrs_serialization`, and
serializes them then: the data is the committed state at send time, whose revision is at least
the event's. Replicas dedupe by revision, so several events of one row that all carry its newest
state are harmless, and a SYNC that was held back and overtaken no longer rolls replicas back.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist

from cqrs_core.payload import TransportPayload
from dj_cqrs.master.serialization import DEFERRED_KEY, is_deferred, meta_for, wire_pk

logger = logging.getLogger("django-cqrs")

K = TypeVar("K")


@dataclasses.dataclass
class Filled(Generic[K]):
    """What became of a batch: events to send, rows to drop, rows to retry later."""

    ready: list[tuple[K, TransportPayload]] = dataclasses.field(default_factory=list)
    """Events with their data, in the order of the batch."""
    dropped: list[K] = dataclasses.field(default_factory=list)
    """The row is gone (its DELETE is in the outbox) or `is_sync_instance()` is now False."""
    failed: list[tuple[K, str]] = dataclasses.field(default_factory=list)
    """Serialization failed (logged); the reason, for `last_error`."""


Source = tuple[Any, bool]
"""(copy of the instance taken at commit, serialize it as it is: no reload for a serializer)."""


def snapshot(instance: Any, fresh: bool) -> Source:
    """A shallow copy of `instance` that later changes of the request's object do not reach."""
    clone = instance.__class__.__new__(instance.__class__)
    clone.__dict__.update(instance.__dict__)
    state = object.__new__(type(instance._state))  # as copy.copy(), minus its generic path
    state.__dict__.update(instance._state.__dict__)
    state.fields_cache = dict(instance._state.fields_cache)
    clone._state = state
    return clone, fresh


def fill(
    using: str,
    batch: Sequence[tuple[K, TransportPayload]],
    sources: Sequence[Source | None] | None = None,
) -> Filled[K]:
    """Give every deferred event of `batch` its instance data.

    From its `sources` entry when there is one, else read from `using` now.
    """
    filled: Filled[K] = Filled()
    wanted: dict[str, list[int]] = {}
    data: dict[int, Any] = {}
    for index, (_key, payload) in enumerate(batch):
        if not is_deferred(payload.instance_data):
            continue
        source = sources[index] if sources is not None else None
        if source is not None:
            data[index] = _from_source(using, payload, *source)
        else:
            wanted.setdefault(payload.instance_data[DEFERRED_KEY], []).append(index)
    if not wanted and not data:
        filled.ready = list(batch)
        return filled
    for label, indexes in wanted.items():
        data.update(_serialize(using, label, [batch[i][1] for i in indexes], indexes))
    for index, (key, payload) in enumerate(batch):
        if index not in data:
            filled.ready.append((key, payload))
            continue
        outcome = data[index]
        if outcome is None:
            filled.dropped.append(key)
        elif isinstance(outcome, str):
            filled.failed.append((key, outcome))
        else:
            filled_data, meta = outcome
            filled.ready.append(
                (key, dataclasses.replace(payload, instance_data=filled_data, meta=meta))
            )
    return filled


def _serialize(
    using: str, label: str, payloads: list[TransportPayload], indexes: list[int]
) -> dict[int, Any]:
    """index → instance data, None (drop) or an error message (retry later)."""
    try:
        model: Any = apps.get_model(label)
        pks = {p.instance_pk for p in payloads}
        # The base manager: a default manager that hides rows must not make their events vanish.
        queryset = model.relate_cqrs_serialization(model._base_manager.using(using))
        found = {str(wire_pk(obj.pk)): obj for obj in queryset.filter(pk__in=pks)}
    except Exception as exc:
        logger.exception(
            "CQRS could not load %d %s row(s) to serialize their events; they stay in the "
            "outbox and are retried",
            len(payloads),
            label,
        )
        return dict.fromkeys(indexes, _reason(exc))
    out: dict[int, Any] = {}
    for index, payload in zip(indexes, payloads, strict=True):
        instance = found.get(str(payload.instance_pk))
        if instance is None:
            out[index] = None
            continue
        try:
            out[index] = _data_and_meta(using, payload, instance, True)
        except Exception as exc:
            logger.exception(
                "CQRS could not serialize %s %s:%s; the event stays in the outbox and is retried",
                payload.signal_type.value,
                payload.cqrs_id,
                payload.instance_pk,
            )
            out[index] = _reason(exc)
    return out


def _from_source(using: str, payload: TransportPayload, instance: Any, fresh: bool) -> Any:
    try:
        return _data_and_meta(using, payload, instance, fresh)
    except ObjectDoesNotExist:  # reloaded for a serializer: deleted since (its DELETE follows)
        return None
    except Exception as exc:
        logger.exception(
            "CQRS could not serialize %s %s:%s; the event stays in the outbox and is retried",
            payload.signal_type.value,
            payload.cqrs_id,
            payload.instance_pk,
        )
        return _reason(exc)


def _data_and_meta(
    using: str, payload: TransportPayload, instance: Any, fresh: bool
) -> tuple[Any, Any] | None:
    """(instance data, meta) of the event, None if `is_sync_instance()` is now False.

    The meta function gets the data serialized now, as 3.x called it at commit.
    """
    if not instance.is_sync_instance():
        return None
    data = instance.to_cqrs_dict(using, sync=fresh)
    return data, meta_for(instance, payload.signal_type, data, payload.previous_data)


def _reason(exc: Exception) -> str:
    return f"serialization failed: {type(exc).__name__}: {exc}"


def at_commit(
    payload: TransportPayload, instance: Any, fresh: bool, using: str
) -> TransportPayload | None:
    """The event serialized now from its in-memory `instance` (3.x's moment: commit).

    None when the instance's `is_sync_instance()` has become False (nothing is sent).

    Raises:
        Exception: whatever the serialization raised (the caller logs it with the event).
    """
    if not is_deferred(payload.instance_data):
        return payload
    if not instance.is_sync_instance():
        return None
    data = instance.to_cqrs_dict(using, sync=fresh)
    meta = meta_for(instance, payload.signal_type, data, payload.previous_data)
    return dataclasses.replace(payload, instance_data=data, meta=meta)
