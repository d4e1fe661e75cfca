"""Turn a master's `instance_data` into the replica model's field values."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime

logger = logging.getLogger("django-cqrs")

CQRS_FIELDS = ("cqrs_revision", "cqrs_updated")


class BadData(ValueError):
    """The master data cannot be applied to this replica model; the message says why."""


def parse_revision(value: Any) -> int | None:
    """A revision from the wire (int, or a numeric string from odd masters), None if absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadData(f"cqrs_revision must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadData(f"cqrs_revision must be an integer, got {value!r}") from None


def parse_updated(value: Any) -> datetime.datetime | None:
    """Aware `cqrs_updated` from the wire (`"2026-11-27 07:52:13.601898+00:00"`); None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        parsed: datetime.datetime | None = value
    elif isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
    else:
        parsed = None
    if parsed is None:
        raise BadData(f"cqrs_updated must be a datetime string, got {value!r}")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    if not settings.USE_TZ:
        parsed = timezone.make_naive(parsed, datetime.timezone.utc)
    return parsed


def map_save_data(model: Any, master_data: Mapping[str, Any]) -> dict[str, Any]:
    """Mapped, checked and typed field values for a SAVE/SYNC.

    `CQRS_MAPPING` renames master keys (every mapped key must be present); the CQRS fields are
    always carried. Unless `CQRS_CUSTOM_SERIALIZATION`, keys that are not fields are dropped,
    values are converted with each field's `to_python`, and required fields must be present.

    Raises:
        BadData: a required key is missing or a value does not fit its field.
    """
    missing = [key for key in CQRS_FIELDS if master_data.get(key) is None]
    if missing:
        raise BadData(f"master data lacks {', '.join(missing)}")
    mapping = model.CQRS_MAPPING
    if mapping:
        absent = [key for key in mapping if key not in master_data]
        if absent:
            raise BadData(
                f"CQRS_MAPPING of {model.__name__} names master keys {absent} that the message "
                f"does not carry (it has {sorted(master_data)})"
            )
        mapped = {replica: master_data[master] for master, replica in mapping.items()}
        for key in CQRS_FIELDS:
            mapped.setdefault(key, master_data[key])
    else:
        mapped = dict(master_data)
    mapped["cqrs_revision"] = parse_revision(mapped["cqrs_revision"])
    mapped["cqrs_updated"] = parse_updated(mapped["cqrs_updated"])
    pk_name = model._meta.pk.name
    if model.CQRS_CUSTOM_SERIALIZATION:
        if pk_name not in mapped and pk_name != "id" and "id" in mapped:
            mapped[pk_name] = mapped["id"]
        if mapped.get(pk_name) is None:
            raise BadData(f"mapped data lacks the primary key {pk_name!r}")
        return mapped
    return _typed_fields(model, mapped)


def map_previous_data(model: Any, previous_data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Previous values of tracked fields, renamed by `CQRS_MAPPING` (unmapped keys dropped)."""
    if previous_data is None:
        return None
    mapping = model.CQRS_MAPPING
    if not mapping:
        return dict(previous_data)
    return {
        replica: previous_data[master]
        for master, replica in mapping.items()
        if master in previous_data
    }


def pk_from_delete(model: Any, master_data: Mapping[str, Any]) -> Any:
    """The replica primary key a DELETE is about (`instance_data['id']`, mapped if need be)."""
    mapping = model.CQRS_MAPPING or {}
    pk_name = model._meta.pk.name
    for master_key, replica_key in mapping.items():
        if replica_key == pk_name and master_key in master_data:
            return to_pk(model, master_data[master_key])
    for key in ("id", pk_name):
        if master_data.get(key) is not None:
            return to_pk(model, master_data[key])
    raise BadData("DELETE data lacks the primary key ('id')")


def to_pk(model: Any, value: Any) -> Any:
    """`value` converted by the primary key field (so 5, "5" and UUID strings compare equal)."""
    try:
        return model._meta.pk.to_python(value)
    except ValidationError as exc:
        raise BadData(f"bad primary key {value!r}: {'; '.join(exc.messages)}") from None


def _typed_fields(model: Any, mapped: dict[str, Any]) -> dict[str, Any]:
    opts = model._meta
    result: dict[str, Any] = {}
    for field in opts.concrete_fields:
        if field.name in mapped:
            value, key = mapped[field.name], field.name
        elif field.attname in mapped:
            value, key = mapped[field.attname], field.attname
        else:
            continue
        if isinstance(field, models.ForeignKey):
            if not isinstance(value, models.Model):
                key = field.attname
                value = _convert(field.target_field, value, field.name)
        else:
            value = _convert(field, value, field.name)
        result[key] = value
    required = [
        field.name
        for field in opts.concrete_fields
        if not field.null
        and not field.has_default()
        and not isinstance(field, models.AutoField)
        and field.name not in result
        and field.attname not in result
    ]
    if required:
        raise BadData(f"{model.__name__} needs field(s) {required} that the master data lacks")
    return result


def _convert(field: Any, value: Any, name: str) -> Any:
    if value is None:
        return None
    try:
        return field.to_python(value)
    except ValidationError as exc:
        raise BadData(f"field {name!r}: {'; '.join(exc.messages)} (got {value!r})") from None
