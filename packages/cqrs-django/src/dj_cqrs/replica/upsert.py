"""Write many rows at once: INSERT ... ON CONFLICT DO UPDATE.

On PostgreSQL the statement is built here, one array per column: Django's `bulk_create`
compiles every value of every row through its expression machinery, which costs more than the
database takes to run the statement (three times more again when a column has a
`db_default`). Values that are expressions, array columns and fields with their own SQL
placeholder take Django's `bulk_create`, as do the other databases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, models

from dj_cqrs.replica.pg_arrays import array_param

try:  # Django >= 5.0
    from django.db.models.expressions import DatabaseDefault
except ImportError:  # pragma: no cover - Django 4.2 has no db_default
    DatabaseDefault = None  # type: ignore[assignment,misc]


def upsert(
    model: Any, using: str, objs: Sequence[Any], unique: list[str], fields: list[str]
) -> None:
    """Insert `objs` (every column), updating only `fields` of rows whose `unique` columns
    already exist. Objects are not refreshed (generated primary keys are not set on them).
    """
    connection = connections[using]
    if connection.vendor == "postgresql" and _upsert_postgresql(
        model, connection, objs, unique, fields
    ):
        return
    features = connection.features
    manager = model._base_manager.db_manager(using)
    if features.supports_update_conflicts_with_target:
        manager.bulk_create(objs, update_conflicts=True, unique_fields=unique, update_fields=fields)
    elif features.supports_update_conflicts and only_unique_key(model, unique):
        # MySQL/MariaDB: ON DUPLICATE KEY UPDATE, which has no conflict target.
        manager.bulk_create(objs, update_conflicts=True, update_fields=fields)
    else:
        # An INSERT that meets another unique key fails (and the caller retries per message)
        # instead of updating the row that holds that key.
        new = [obj for obj in objs if obj._state.adding]
        old = [obj for obj in objs if not obj._state.adding]
        if new:
            manager.bulk_create(new)
        if old:
            manager.bulk_update(old, fields)


def only_unique_key(model: Any, unique: list[str]) -> bool:
    """True if a row of `model` can clash with another one on the `unique` columns only.

    MySQL's ON DUPLICATE KEY UPDATE fires on whichever unique key a row hits first: an event
    for a new pk whose other unique column equals a stored row's would overwrite that row.
    An auto-increment primary key outside `unique` cannot clash: new rows leave it to the
    database and stored rows carry their own.
    """
    meta = model._meta
    wanted = {meta.get_field(name).column for name in unique}
    keys: list[set[str]] = [{field.column} for field in meta.concrete_fields if field.unique]
    keys += [{meta.get_field(name).column for name in names} for names in meta.unique_together]
    for constraint in meta.total_unique_constraints:
        keys.append({meta.get_field(name).column for name in constraint.fields})
    for constraint in meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and (
            constraint.expressions or constraint.condition is not None
        ):
            return False  # not all databases enforce these; do not guess
    auto_pk = {meta.pk.column} if meta.pk.db_returning and meta.pk.name not in unique else None
    return all(key == wanted or key == auto_pk for key in keys)


def _upsert_postgresql(
    model: Any, connection: Any, objs: Sequence[Any], unique: list[str], fields: list[str]
) -> bool:
    """One `INSERT ... SELECT FROM unnest(arrays)` per set of `db_default` columns.

    A column of arrays keeps the statement short and the same from batch to batch, so the
    driver does not re-parse a statement of thousands of placeholders every time. Returns
    False (nothing written) when a column or a value needs Django's `bulk_create`.
    """
    meta = model._meta
    columns = [field for field in meta.concrete_fields if not getattr(field, "generated", False)]
    types = [array_type(field, connection) for field in columns]
    if None in types or any(type(field).pre_save not in _STOCK_PRE_SAVE for field in columns):
        return False  # no array type, or values the field computes itself (bulk_create asks it)
    auto_pk = meta.pk if meta.pk in columns and meta.pk.db_returning else None
    ready = [READY_TYPES.get(type(field)) for field in columns]
    groups: dict[tuple[bool, ...], list[list[Any]]] = {}
    for obj in objs:
        row: list[Any] = []
        defaults: list[bool] = []
        for field, ready_type in zip(columns, ready, strict=True):
            value = getattr(obj, field.attname)
            if value is None or type(value) is ready_type:
                defaults.append(value is None and field is auto_pk)
                row.append(value)
            elif DatabaseDefault is not None and isinstance(value, DatabaseDefault):
                defaults.append(True)
                row.append(None)
            elif hasattr(value, "resolve_expression"):
                return False
            else:
                defaults.append(False)
                row.append(field.get_db_prep_save(value, connection))
        groups.setdefault(tuple(defaults), []).append(row)
    quote = connection.ops.quote_name
    target = ", ".join(quote(meta.get_field(name).column) for name in unique)
    updated = {meta.get_field(name).column for name in fields}
    with connection.cursor() as cursor:
        for pattern, rows in groups.items():
            kept = [i for i, is_default in enumerate(pattern) if not is_default]
            names = [quote(columns[i].column) for i in kept]
            updates = ", ".join(
                f"{quote(columns[i].column)} = EXCLUDED.{quote(columns[i].column)}"
                for i in kept
                if columns[i].column in updated
            )
            sql = (
                f"INSERT INTO {quote(meta.db_table)} ({', '.join(names)}) "
                f"SELECT * FROM unnest({', '.join(f'%s::{types[i]}' for i in kept)}) "
                f"ON CONFLICT ({target}) "
                + (f"DO UPDATE SET {updates}" if updates else "DO NOTHING")
            )
            cursor.execute(sql, [array_param([row[i] for row in rows]) for i in kept])
    return True


READY_TYPES: dict[type[Any], type[Any]] = {
    **dict.fromkeys(
        (
            models.AutoField,
            models.BigAutoField,
            models.SmallAutoField,
            models.IntegerField,
            models.BigIntegerField,
            models.SmallIntegerField,
            models.PositiveIntegerField,
            models.PositiveBigIntegerField,
            models.PositiveSmallIntegerField,
        ),
        int,
    ),
    **dict.fromkeys((models.CharField, models.TextField, models.SlugField), str),
    models.FloatField: float,
    models.BooleanField: bool,
}
"""Stock field classes (exactly these: a subclass may prepare its values) whose values of
exactly this type go to the driver as they are: what `get_db_prep_save` returns, minus the calls.
Their `to_python` returns such a value unchanged as well (`mapping.fit` skips the call)."""


_STOCK_PRE_SAVE = frozenset(
    (
        models.Field.pre_save,
        models.DateField.pre_save,
        models.DateTimeField.pre_save,
        models.TimeField.pre_save,
    )
)
"""`pre_save` of these only reads the attribute (without auto_now, which bulk apply refuses)."""


def array_type(field: Any, connection: Any) -> str | None:
    """The PostgreSQL array type of `field`'s values (`integer[]`), or None if it has none."""
    if hasattr(field, "get_placeholder"):
        return None  # the field writes its values through its own SQL (PostGIS and the like)
    db_type = field.cast_db_type(connection)
    if not db_type or "[" in db_type:
        return None  # no column type, or already an array (unnest would flatten it)
    base, bounded, _ = db_type.partition("(")
    if bounded and base.strip() in _UNBOUNDED:
        # An explicit cast to varchar(n) cuts longer strings and one to numeric(p, s) rounds;
        # cast to the unbounded type and let the column's assignment reject what it cannot
        # hold, as an INSERT of the single value does.
        db_type = _UNBOUNDED[base.strip()]
    return f"{db_type}[]"


_UNBOUNDED = {
    "varchar": "varchar",
    "character varying": "varchar",
    "char": "bpchar",
    "character": "bpchar",
    "numeric": "numeric",
    "decimal": "numeric",
}
"""PostgreSQL types whose length or precision modifier a cast would enforce by truncating."""
