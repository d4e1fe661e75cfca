"""Model instance → `instance_data` / `previous_data`, in the wire form of django-cqrs 3.x.

Dates, datetimes and UUIDs become `str()` here (what upstream put in its dicts and what dump
files contain); other values (Decimal, time, bytes...) are left to the wire codec.
"""

from __future__ import annotations

import copy
import datetime
import functools
import importlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Field, Model

from cqrs_core.constants import SignalType
from dj_cqrs.constants import ALL_BASIC_FIELDS as ALL_FIELDS


def wire_value(value: Any) -> Any:
    """The value as django-cqrs put it into instance data."""
    if isinstance(value, (datetime.date, uuid.UUID)):  # datetime is a date
        return str(value)
    return value


def wire_pk(value: Any) -> Any:
    """`instance_pk` / DELETE `id`: strings for UUID, date and datetime keys (JSON-safe)."""
    return wire_value(value)


DEFERRED_KEY = "$cqrs_serialize_at_send"
"""The only key of the `instance_data` of a stored SAVE/SYNC: the label of the model to load.

Events are serialized when they are sent, from the committed row (see `dj_cqrs.outbox.committed`),
so a serializer sees what the transaction wrote after the save and the request does not pay it.
"""


def deferred_data(instance: Model) -> dict[str, Any]:
    """`instance_data` standing for "serialize `instance` when sending"."""
    return {DEFERRED_KEY: instance._meta.label}


def is_deferred(data: Any) -> bool:
    """True for `instance_data` that `deferred_data` built."""
    return isinstance(data, dict) and len(data) == 1 and DEFERRED_KEY in data


def concrete_data(instance: Model, included: Iterable[str] | str | None) -> dict[str, Any]:
    """Concrete fields in model order (FKs by name, holding the related pk)."""
    key = None if included is None or included == ALL_FIELDS else tuple(included)
    get = getattr
    return {
        name: wire_value(get(instance, attname))
        for name, attname in serialized_fields(type(instance), key)
    }


@functools.cache
def serialized_fields(
    model: type[Model], names: tuple[str, ...] | None
) -> tuple[tuple[str, str], ...]:
    """(name, attname) of the fields `concrete_data` sends, computed once per model and spec.

    Reading the attribute by attname is what `Field.value_from_object` does, minus a call.
    """
    wanted = None if names is None else set(names)
    return tuple(
        (field.name, field.attname)
        for field in model._meta.concrete_fields
        if wanted is None or field.name in wanted
    )


@functools.cache
def serializer_class(path: str) -> Any:
    """Import a CQRS_SERIALIZER dotted path (cached)."""
    module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"CQRS_SERIALIZER {path!r} cannot be imported: {exc}. It must be the dotted path of "
            "a class taking the instance and exposing `.data`."
        ) from exc


@functools.cache
def tracked_fields(model: type[Model]) -> list[Field[Any, Any]] | None:
    """The fields named by CQRS_TRACKED_FIELDS, in model order (None when nothing is tracked).

    `'__all__'` is every concrete field, the primary key and `cqrs_revision`/`cqrs_updated`
    included, exactly as if they were all listed: django-cqrs 3.x sends the same
    `previous_data` for both spellings.
    """
    spec = getattr(model, "CQRS_TRACKED_FIELDS", None)
    if spec is None:
        return None
    fields = model._meta.concrete_fields
    if spec == ALL_FIELDS:
        return list(fields)
    if isinstance(spec, str):
        raise ImproperlyConfigured(
            f"{model.__name__}.CQRS_TRACKED_FIELDS must be '__all__' or a list of field names, "
            f"got {spec!r}."
        )
    known = {f.name for f in fields} | {f.attname for f in fields}
    missing = [name for name in spec if name not in known]
    if missing:
        raise ImproperlyConfigured(
            f"{model.__name__}.CQRS_TRACKED_FIELDS names unknown field(s): {', '.join(missing)}."
        )
    wanted = set(spec)
    return [f for f in fields if f.name in wanted or f.attname in wanted]


def _kept(value: Any) -> Any:
    """A tracked value as it is compared and sent: wire form, copied (mutable JSON values)."""
    return copy.deepcopy(wire_value(value))


def tracked_snapshot(instance: Model, only: Iterable[str] | None = None) -> dict[str, Any] | None:
    """Loaded tracked values by attname (deferred fields are skipped), or None if untracked.

    This is the state the next save is compared to; `only` limits it to these attnames.
    """
    fields = tracked_fields(type(instance))
    if fields is None:
        return None
    loaded = instance.__dict__
    wanted = None if only is None else set(only)
    return {
        f.attname: _kept(loaded[f.attname])
        for f in fields
        if f.attname in loaded and (wanted is None or f.attname in wanted)
    }


def changed_tracked(instance: Model, before: dict[str, Any] | None) -> dict[str, Any] | None:
    """`previous_data` of a save: the old values of the tracked fields that changed.

    `before` None means a new row. Then every tracked field holding a value maps to None,
    keyed by attname (`author_id`), as 3.x's tracker did. For an existing row the keys are
    field names (`author`) and the values are the `before` snapshot's. A deferred field that
    was assigned without being loaded is compared with the value stored in the database.
    """
    fields = tracked_fields(type(instance))
    if fields is None:
        return None
    loaded = instance.__dict__
    if before is None:
        return {f.attname: None for f in fields if loaded.get(f.attname) is not None}
    unread = [f.attname for f in fields if f.attname in loaded and f.attname not in before]
    if unread:
        before = {**before, **_stored(instance, unread)}
    previous: dict[str, Any] = {}
    for field in fields:
        attname = field.attname
        if attname in loaded and attname in before:
            old = before[attname]
            if old != wire_value(loaded[attname]):
                previous[field.name] = old
    return previous


def _stored(instance: Model, attnames: list[str]) -> dict[str, Any]:
    """The database values of `attnames` for `instance`'s row ({} if it has none)."""
    if instance.pk is None:
        return {}
    manager = type(instance)._base_manager.using(instance._state.db)
    row = manager.filter(pk=instance.pk).values(*attnames).first()
    return {} if row is None else {name: _kept(value) for name, value in row.items()}


def all_tracked(instance: Model) -> dict[str, Any] | None:
    """Every loaded tracked value by attname: the `previous_data` of a bulk update (3.x)."""
    return tracked_snapshot(instance)


def meta_for(
    instance: Any,
    signal_type: SignalType,
    instance_data: Mapping[str, Any],
    previous_data: Mapping[str, Any] | None,
) -> Any:
    """`instance.get_cqrs_meta(...)` with the keywords of 3.x: `instance_data`,
    `previous_data` (not for a DELETE) and `signal_type`; the meta function also gets `obj`."""
    if signal_type is SignalType.DELETE:
        return instance.get_cqrs_meta(instance_data=instance_data, signal_type=signal_type)
    return instance.get_cqrs_meta(
        instance_data=instance_data, previous_data=previous_data, signal_type=signal_type
    )
