"""Turn a master's `instance_data` into the replica model's field values."""

from __future__ import annotations

import datetime
import decimal
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import DecimalValidator
from django.db import connections, models, router
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from dj_cqrs.replica.upsert import READY_TYPES

logger = logging.getLogger("django-cqrs")

CQRS_FIELDS = ("cqrs_revision", "cqrs_updated")


class BadData(ValueError):
    """The master data cannot be applied to this replica model; the message says why."""


REVISION_MAX = 2**31 - 1
"""The largest revision the `cqrs_revision` columns (IntegerField) of rows and tombstones hold."""


def parse_revision(value: Any) -> int | None:
    """A revision from the wire, None if absent.

    Only what the master sends is accepted: a JSON integer from 0 to `REVISION_MAX`. A float,
    a string or a bool is refused rather than converted (3.9 must not become revision 3), and
    so is a value the column cannot hold.
    """
    if value is None:
        return None
    if type(value) is not int:
        raise BadData(f"cqrs_revision must be a non-negative integer, got {value!r:.100}")
    if not 0 <= value <= REVISION_MAX:
        raise BadData(f"cqrs_revision must be between 0 and {REVISION_MAX}, got {value}")
    return value


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


def map_save_data(
    model: Any, master_data: Mapping[str, Any], connection: Any = None
) -> dict[str, Any]:
    """Mapped, checked and typed field values for a SAVE/SYNC.

    `CQRS_MAPPING` renames master keys (every mapped key must be present); the CQRS fields are
    always carried. Unless `CQRS_CUSTOM_SERIALIZATION`, keys that are not fields are dropped,
    values are converted with each field's `to_python`, and required fields must be present.
    `connection`: the model's database (see `fit`), when the caller already has it.

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
    return _typed_fields(model, mapped, connection)


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
            return _tombstone_key(to_pk(model, master_data[master_key]))
    for key in ("id", pk_name):
        if master_data.get(key) is not None:
            return _tombstone_key(to_pk(model, master_data[key]))
    raise BadData("DELETE data lacks the primary key ('id')")


TOMBSTONE_KEY_LENGTH = 255
"""`Tombstone.instance_pk` max_length: a DELETE of a longer key cannot leave its tombstone."""


def _tombstone_key(pk: Any) -> Any:
    if len(str(pk)) > TOMBSTONE_KEY_LENGTH:
        raise BadData(
            f"primary key of {len(str(pk))} characters: its tombstone holds "
            f"{TOMBSTONE_KEY_LENGTH}, so the DELETE cannot be recorded"
        )
    return pk


def to_pk(model: Any, value: Any, connection: Any = None) -> Any:
    """`value` converted by the primary key field (so 5, "5" and UUID strings compare equal).

    Raises:
        BadData: the key does not fit the primary key column (see `fit`).
    """
    field = model._meta.pk
    target = field.target_field if field.is_relation else field
    return fit(target, value, field.name, model, connection)


def _typed_fields(model: Any, mapped: dict[str, Any], connection: Any) -> dict[str, Any]:
    opts = model._meta
    if connection is None:  # once per message, not per field: the router is not free
        connection = _connection(model)
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
                value = fit(field.target_field, value, field.name, model, connection)
        elif field.name not in CQRS_FIELDS:  # parsed by parse_revision / parse_updated
            value = fit(field, value, field.name, model, connection)
        result[key] = value
    required = [  # the cheap membership tests first: a message usually has every field
        field.name
        for field in opts.concrete_fields
        if field.name not in result
        and field.attname not in result
        and not field.null
        and not field.has_default()
        and not isinstance(field, models.AutoField)
    ]
    if required:
        raise BadData(f"{model.__name__} needs field(s) {required} that the master data lacks")
    return result


def fit(field: Any, value: Any, name: str, model: Any, connection: Any = None) -> Any:
    """`value` as `field` stores it, or BadData if that would change it.

    Django's `to_python` converts generously: `int(3.9)` is 3, `str({...})` stores a dict's
    repr, and the database then cuts or rounds what its column cannot hold (an over-long
    string in a bulk statement, extra decimal places). Here a value is refused instead when
    the conversion or the column would lose part of it. Conversions that keep the value
    (5 to "5", "5" to 5, 3.0 to 3) are kept as django-cqrs made them. Only Django's own field
    classes are checked; a field with its own `to_python` decides for itself. `connection`
    is the model's database (looked up when None), whose column types decide some limits.
    """
    if value is None:
        return None
    to_python = type(field).to_python
    if type(value) is READY_TYPES.get(type(field)):
        converted = value  # what the stock field's `to_python` returns for it: itself
    elif isinstance(value, (dict, list)) and to_python in _SCALAR_TO_PYTHON:
        raise BadData(
            f"field {name!r}: a {type(value).__name__} does not fit {type(field).__name__} "
            f"(got {value!r:.100})"
        )
    else:
        converted = _to_python(field, value, name)
    problem = _loss(field, to_python, value, converted, model, connection)
    if problem:
        raise BadData(f"field {name!r}: {problem} (got {value!r:.100})")
    return converted


def _to_python(field: Any, value: Any, name: str) -> Any:
    try:
        return field.to_python(value)
    except ValidationError as exc:
        raise BadData(f"field {name!r}: {'; '.join(exc.messages)} (got {value!r:.100})") from None
    except (TypeError, ValueError, ArithmeticError) as exc:  # int(inf), float(10**400), ...
        raise BadData(f"field {name!r}: {exc} (got {value!r:.100})") from None


def _loss(
    field: Any, to_python: Any, value: Any, converted: Any, model: Any, connection: Any
) -> str | None:
    """What storing `converted` in `field`'s column would lose of `value`, or None."""
    if to_python is models.CharField.to_python:
        limit = field.max_length
        if limit is not None and isinstance(converted, str) and len(converted) > limit:
            return f"{len(converted)} characters, the column holds {limit}"
    elif to_python is models.IntegerField.to_python:
        if isinstance(value, (float, decimal.Decimal)) and converted != value:
            return "not a whole number"
        low, high = _integer_range(field, connection or _connection(model))
        if (low is not None and converted < low) or (high is not None and converted > high):
            return f"out of the column's range {low}..{high}"
    elif to_python is models.DecimalField.to_python and field.max_digits is not None:
        try:
            DecimalValidator(field.max_digits, field.decimal_places)(converted.normalize())
        except ValidationError as exc:
            return "; ".join(exc.messages)
    elif to_python is models.GenericIPAddressField.to_python and isinstance(converted, str):
        # PostgreSQL's inet column refuses what is not an address; the others would store it.
        try:
            field.run_validators(converted)
        except ValidationError as exc:
            return "; ".join(exc.messages)
    elif to_python is models.UUIDField.to_python and _mariadb_refuses_uuid(
        converted, connection or _connection(model)
    ):
        return "MariaDB's uuid column refuses a version 8-15 UUID of variant 0 (MDEV-29959)"
    return None


def _connection(model: Any) -> Any:
    return connections[router.db_for_write(model)]


def _mariadb_refuses_uuid(value: Any, connection: Any) -> bool:
    """True for a UUID the native `uuid` column of MariaDB 10.7+ refuses (an error on insert).

    Without this check a bulk batch that also holds a later event of the row never writes the
    refused value, and the message is applied there but dead-lettered on the per-message path.
    """
    if not isinstance(value, uuid.UUID):
        return False
    if connection.vendor != "mysql" or not getattr(
        connection.features, "has_native_uuid_field", False
    ):
        return False
    version, variant = (value.int >> 76) & 0xF, (value.int >> 60) & 0xF
    return version >= 8 and variant < 8


def _integer_range(field: Any, connection: Any) -> tuple[int | None, int | None]:
    """The range Django declares for the field's column on the model's database.

    The declared table, not `integer_field_range()`: SQLite's method answers 64 bits for every
    field (it stores anything), which would let tests on SQLite accept what PostgreSQL and
    MySQL refuse.
    """
    ops = connection.ops
    ranges: dict[str, tuple[int | None, int | None]] = getattr(ops, "integer_field_ranges", {})
    return ranges.get(field.get_internal_type(), (None, None))


_SCALAR_TO_PYTHON = frozenset(
    cls.to_python
    for cls in (
        models.CharField,
        models.TextField,
        models.IntegerField,
        models.FloatField,
        models.DecimalField,
        models.BooleanField,
        models.DateField,
        models.DateTimeField,
        models.TimeField,
        models.DurationField,
        models.UUIDField,
        models.GenericIPAddressField,
    )
)
"""`to_python` of Django's fields of one plain value: they would store a dict or list as its
repr (or fail in odd ways), never as the structure the master sent."""
