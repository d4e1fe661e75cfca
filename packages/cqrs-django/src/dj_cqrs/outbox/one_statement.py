"""A save and its outbox row in one SQL statement (PostgreSQL, outside a transaction).

A save in autocommit mode would otherwise cost four round trips (BEGIN, the row, the outbox
row, COMMIT) against the single one of a plain Django save. PostgreSQL runs a data-modifying
`WITH` as one atomic statement, so the row and its outbox row are written together:

    WITH m AS (INSERT INTO app_model ... RETURNING id),
         o AS (INSERT INTO dj_cqrs_outboxevent (...) SELECT ..., replace(body, '<pk>', m.id::text)
               FROM m RETURNING id)
    SELECT m.*, o.id FROM m, o

The stored body does not hold the instance data (it is serialized when the event is sent, see
`dj_cqrs.outbox.committed`), so the incremented `cqrs_revision` does not matter here; only a
primary key the database generates is unknown when the body is built: a stand-in number takes
its place, which the statement replaces by the real value. Models whose event could depend on
it in other ways (overridden meta, tracking or `is_sync_instance` hooks, correlation and meta
functions) keep the transaction, as does every save while events go one by one through
`dj_cqrs.controller.producer.produce`; so does any save this module cannot take whole, which
then opens its transaction before its first statement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any, cast

from django.db import connections, transaction
from django.db.models import Model, sql
from django.db.models.expressions import Combinable
from django.db.models.fields import NOT_PROVIDED
from django.utils import timezone

from cqrs_core.payload import TransportPayload
from dj_cqrs import conf
from dj_cqrs.controller import producer
from dj_cqrs.master.events import save_event
from dj_cqrs.master.serialization import wire_pk
from dj_cqrs.observability import metrics, tracing
from dj_cqrs.outbox import rows
from dj_cqrs.outbox.models import OutboxEvent

PK_STAND_IN = -4_611_686_018_427_400_249
"""Serialized in place of a primary key the database has not generated yet."""

_PENDING = "_cqrs_one_statement"
WRITTEN = "_cqrs_written"
"""Instance attribute: (outbox row id, payload) of the event the statement stored."""


@contextlib.contextmanager
def one_statement_save(instance: Model, using: str) -> Iterator[None]:
    """Let the save's INSERT or UPDATE carry its outbox row (see `insert` and `update`)."""
    with contextlib.ExitStack() as fallback:
        instance.__dict__[_PENDING] = (using, fallback)
        try:
            yield
        finally:
            instance.__dict__.pop(_PENDING, None)


def pending(instance: Model) -> bool:
    """True inside `one_statement_save`, until the save's statement has run."""
    return _PENDING in instance.__dict__


def eligible(instance: Model, connection: Any, base: type[Model]) -> bool:
    """Whether a save of `instance` on `connection` can be one statement with its outbox row.

    `base`: the mixin class whose event hooks the model must not override (`RawMasterMixin`;
    passed in, so that this layer does not import the model hooks above it).
    """
    if connection.vendor != "postgresql" or not _model_eligible(type(instance), base):
        return False
    if conf.master_setting("correlation_function") or conf.master_setting("meta_function"):
        return False
    return not producer.synchronous()  # those events are sent at commit, from the instance


@functools.cache
def _model_eligible(model: type[Model], base: type[Model]) -> bool:
    meta = model._meta
    if meta.parents:
        return False
    for name in ("get_cqrs_meta", "get_tracked_fields_data", "is_sync_instance"):
        if getattr(model, name) is not getattr(base, name):
            return False
    return not any(
        getattr(field, "generated", False) or _has_db_default(field)
        for field in meta.concrete_fields
    )


def _has_db_default(field: Any) -> bool:
    return getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED


def give_up(instance: Model) -> None:
    """This save cannot be one statement: open its transaction now, before its first query."""
    using, fallback = instance.__dict__.pop(_PENDING)
    fallback.enter_context(transaction.atomic(using=using, savepoint=False))


def insert(
    instance: Model, using: str, fields: Any, returning_fields: Any, raw: bool
) -> list[tuple[Any, ...]] | None:
    """Run the save's INSERT with its outbox row; the returned rows, as `_do_insert` gives.

    None: nothing was run, and the save goes on in a transaction (see `give_up`).
    """
    meta = instance._meta
    pk_unknown = instance.pk is None
    returning = list(returning_fields or ())
    if pk_unknown and meta.pk not in returning:
        give_up(instance)
        return None
    if isinstance(instance.__dict__.get("cqrs_revision"), Combinable):
        give_up(instance)  # a revision only the database knows: not a create we can stand in for
        return None
    query = sql.InsertQuery(type(instance))
    query.insert_values(fields, [instance], raw=raw)
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = returning or [meta.pk]
    statements = compiler.as_sql()  # runs the fields' pre_save (auto_now), as Django's does
    if len(statements) != 1:
        give_up(instance)
        return None
    statement, params = statements[0]
    stand_ins = {"pk": PK_STAND_IN} if pk_unknown else {}
    event = _event(instance, using, created=True, stand_ins=stand_ins)
    if event is None:
        give_up(instance)
        return None
    columns = [field.column for field in compiler.returning_fields]
    pk_column = cast("str", meta.pk.column)  # None only for fields without a column (m2m)
    row = _run(connections[using], statement, params, event, pk_column if stand_ins else None)
    if row is None:  # an INSERT writes its row or raises
        raise RuntimeError(f"INSERT of {meta.label} returned no row")
    values = row[: len(columns)]
    if returning:
        cols = [field.get_col(meta.db_table) for field in returning]
        converters = compiler.get_converters(cols)
        if converters:
            values = next(iter(compiler.apply_converters([list(values)], converters)))
    pk = values[columns.index(meta.pk.column)] if pk_unknown else instance.pk
    _store(instance, row[-1], event.payload, {PK_STAND_IN: wire_pk(pk)})
    return [tuple(values)] if returning else []


def update(instance: Model, using: str, statement: str, params: Any, revision: Any) -> bool | None:
    """Run the save's UPDATE (which sets `revision` by SQL) with its outbox row.

    Returns False when no row matched (nothing was written; Django inserts next), None when
    nothing was run and the save goes on in a transaction (see `give_up`).
    """
    event = _event(instance, using, created=False, stand_ins={})
    if event is None:
        give_up(instance)
        return None
    connection = connections[using]
    statement = f"{statement} RETURNING {connection.ops.quote_name(revision.column)}"
    row = _run(connection, statement, params, event, None)
    if row is None:
        return False
    instance.__dict__[revision.attname] = row[0]
    _store(instance, row[-1], event.payload, {})
    return True


@dataclasses.dataclass
class _Event:
    payload: TransportPayload
    body: str


def _event(
    instance: Model, using: str, *, created: bool, stand_ins: dict[str, int]
) -> _Event | None:
    """The SAVE event with stand-ins serialized for `stand_ins` ({"pk": number}).

    None if a stand-in number shows up anywhere else in the body (in the user's data), or
    a field holds the user's F() expression (its tracked previous value would be compared with
    an expression, not the value the statement computes).
    """
    pk_attname = instance._meta.pk.attname
    values = {pk_attname if name == "pk" else name: number for name, number in stand_ins.items()}
    real = {attname: instance.__dict__.get(attname) for attname in values}
    try:
        instance.__dict__.update(values)
        if any(
            isinstance(value, Combinable) and name != "cqrs_revision"
            for name, value in instance.__dict__.items()
        ):
            return None
        _, entry = save_event(instance, using, created=created)
    finally:
        instance.__dict__.update(real)
    payload = entry.payload
    body = rows.body_of(payload)
    for number in stand_ins.values():
        if body.count(str(number)) != (payload.instance_pk == number):
            return None
    return _Event(payload, body)


def _run(
    connection: Any, statement: str, params: Any, event: _Event, pk_column: str | None
) -> tuple[Any, ...] | None:
    """`statement` (ending in RETURNING) plus the INSERT of `event`'s outbox row.

    `pk_column`: the column of the primary key the database generates (the body's stand-in is
    replaced by it), or None when the key is known. Returns the statement's row followed by the
    outbox row's id; None if it wrote no row.
    """
    payload = event.payload
    if pk_column is None:
        pk_params: list[Any] = [str(payload.instance_pk)]
        stand_in: list[Any] = []
    else:
        pk_params, stand_in = [], [str(PK_STAND_IN)]
    tracing.stamp([payload])  # tracing (issue 16): the `create` span, its context in the headers
    when = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    claimed_by, until = rows.claim(when)
    all_params = [
        *params,
        payload.cqrs_id,
        *pk_params,
        payload.signal_type.value,
        payload.queue,
        event.body,
        *stand_in,
        adapt(when),
        claimed_by,
        None if until is None else adapt(until),
        tracing.stored(payload),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_combined_sql(connection, statement, pk_column), all_params)
        row = cursor.fetchone()
    if row is None:
        return None
    metrics.written([payload])
    return tuple(row)


_combined: dict[tuple[str, str | None], str] = {}
"""`_run`'s statements by (the save's statement, `pk_column`): the same few per model."""
_COMBINED_MAX = 4096


def _combined_sql(connection: Any, statement: str, pk_column: str | None) -> str:
    """The save's `statement` and the outbox INSERT in one `WITH` (built once per shape)."""
    key = (statement, pk_column)
    combined = _combined.get(key)
    if combined is not None:
        return combined
    quote = connection.ops.quote_name
    if pk_column is None:
        pk_sql, body_sql = "%s", "%s"
    else:  # the generated key, as text, in its column and in place of the body's stand-in
        pk_sql = f"m.{quote(pk_column)}::text"
        body_sql = f"replace(%s, %s, {pk_sql})"
    columns = ", ".join(quote(column) for column in rows.COLUMNS)
    combined = (
        f"WITH m AS ({statement}), "
        f"o AS (INSERT INTO {quote(OutboxEvent._meta.db_table)} ({columns}) "
        f"SELECT %s, {pk_sql}, %s, %s, {body_sql}, %s, 0, '', %s, %s, %s FROM m RETURNING id) "
        "SELECT m.*, o.id FROM m, o"
    )
    if len(_combined) < _COMBINED_MAX:
        _combined[key] = combined
    return combined


def _store(
    instance: Model, outbox_id: int, payload: TransportPayload, real: dict[int, Any]
) -> None:
    """Keep the stored event, stand-ins replaced, for the post_save hand-over to the publisher."""
    instance_pk = payload.instance_pk
    if isinstance(instance_pk, int) and instance_pk in real:
        # the payload was built for this statement alone: nothing else holds it yet
        object.__setattr__(payload, "instance_pk", real[instance_pk])
    instance.__dict__.pop(_PENDING, None)
    instance.__dict__[WRITTEN] = (outbox_id, payload)
