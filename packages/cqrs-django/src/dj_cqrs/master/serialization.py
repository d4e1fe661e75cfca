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
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Field, Model

ALL_FIELDS = "__all__"
CQRS_FIELD_NAMES = ("cqrs_revision", "cqrs_updated")


def wire_value(value: Any) -> Any:
    """The value as django-cqrs put it into instance data."""
    if isinstance(value, (datetime.date, uuid.UUID)):  # datetime is a date
        return str(value)
    return value


def wire_pk(value: Any) -> Any:
    """`instance_pk` / DELETE `id`: strings for UUID, date and datetime keys (JSON-safe)."""
    return wire_value(value)


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
    """The fields named by CQRS_TRACKED_FIELDS (None when nothing is tracked)."""
    spec = getattr(model, "CQRS_TRACKED_FIELDS", None)
    if not spec:
        return None
    fields = model._meta.concrete_fields
    if spec == ALL_FIELDS:
        return [f for f in fields if f.name not in CQRS_FIELD_NAMES]
    by_name = {f.name: f for f in fields} | {f.attname: f for f in fields}
    missing = [name for name in spec if name not in by_name]
    if missing:
        raise ImproperlyConfigured(
            f"{model.__name__}.CQRS_TRACKED_FIELDS names unknown field(s): {', '.join(missing)}."
        )
    return [by_name[name] for name in spec]


def tracked_snapshot(instance: Model) -> dict[str, Any] | None:
    """Current values of the tracked fields that are loaded (deferred ones are skipped)."""
    fields = tracked_fields(type(instance))
    if fields is None:
        return None
    loaded = instance.__dict__
    return {f.name: copy.deepcopy(loaded[f.attname]) for f in fields if f.attname in loaded}


def changed_tracked(instance: Model, before: dict[str, Any] | None) -> dict[str, Any] | None:
    """Previous values of the tracked fields that changed since `before`.

    `before` None means the instance is new: every tracked field that has a value changed
    from None.
    """
    fields = tracked_fields(type(instance))
    if fields is None:
        return None
    loaded = instance.__dict__
    previous: dict[str, Any] = {}
    for field in fields:
        if field.attname not in loaded:
            continue
        current = loaded[field.attname]
        if before is None:
            if current is not None:
                previous[field.name] = None
        elif field.name in before and before[field.name] != current:
            previous[field.name] = wire_value(before[field.name])
    return previous


def all_tracked(instance: Model) -> dict[str, Any] | None:
    """Values of every loaded tracked field (previous_data of a bulk update)."""
    snapshot = tracked_snapshot(instance)
    if snapshot is None:
        return None
    return {name: wire_value(value) for name, value in snapshot.items()}
