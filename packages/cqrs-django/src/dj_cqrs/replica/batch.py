"""Apply many events of one plain replica model with a few bulk statements.

The single-message path (`ReplicaManager.save_instance` / `delete_instance`) costs three to
five queries per event. Here one batch of one model costs: one key-lock statement
(PostgreSQL), one `SELECT ... FOR UPDATE` of the rows, one of their tombstones, then one
DELETE, one upsert of the rows and one upsert of the tombstones. Between the reads and the
writes the events are replayed in memory, per row in arrival order: each one is decided by
`dj_cqrs.replica.decide`, as on the single path, so the final state is the one the single
path would leave. Only the reading and writing of rows differ.

Only models whose apply is the stock one can take this path (see `supports_bulk`); the others,
and every batch whose bulk statements fail, are applied message by message by the consumer.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router
from django.db.models import BooleanField, Q, signals
from django.db.models.expressions import RawSQL
from django.utils import timezone

from cqrs_core.constants import SignalType
from cqrs_core.payload import TransportPayload
from dj_cqrs.replica import decide
from dj_cqrs.replica.decide import Action
from dj_cqrs.replica.manager import ReplicaManager
from dj_cqrs.replica.pg_arrays import array_param
from dj_cqrs.replica.rules import Mark
from dj_cqrs.replica.tombstone import Tombstone
from dj_cqrs.replica.upsert import READY_TYPES, array_type, upsert

logger = logging.getLogger("django-cqrs")

_SIGNALS = (signals.pre_save, signals.post_save, signals.pre_delete, signals.post_delete)


@functools.cache
def _stock_methods() -> dict[str, Any]:
    from dj_cqrs.replica.mixins import ReplicaMixin

    return {
        "cqrs_save": ReplicaMixin.cqrs_save.__func__,  # type: ignore[attr-defined]
        "cqrs_delete": ReplicaMixin.cqrs_delete.__func__,  # type: ignore[attr-defined]
        "cqrs_create": ReplicaMixin.cqrs_create.__func__,  # type: ignore[attr-defined]
        "cqrs_update": ReplicaMixin.cqrs_update,
        "save": models.Model.save,
        "delete": models.Model.delete,
    }


def supports_bulk(model: Any) -> bool:
    """True if applying `model`'s events in bulk gives what the stock per-message apply gives.

    Not for: non-model replicas, CQRS_NO_DB_OPERATIONS, CQRS_CUSTOM_SERIALIZATION, overridden
    apply methods (`cqrs_save/create/update/delete`, `save`, `delete`, manager methods),
    multi-table inheritance, `auto_now(_add)` fields, and models with save/delete signal
    receivers (bulk statements send no signals).
    """
    meta = getattr(model, "_meta", None)
    if meta is None or getattr(model, "CQRS_NO_DB_OPERATIONS", True):
        return False
    if getattr(model, "CQRS_CUSTOM_SERIALIZATION", False) or meta.parents or meta.pk.is_relation:
        return False
    stock = _stock_methods()
    for name, func in stock.items():
        attr = getattr(model, name, None)
        if getattr(attr, "__func__", attr) is not func:
            return False
    manager = getattr(model, "cqrs", None)
    if not isinstance(manager, ReplicaManager):
        return False
    for name in ("save_instance", "create_instance", "update_instance", "delete_instance"):
        if getattr(type(manager), name) is not getattr(ReplicaManager, name):
            return False
    for field in meta.concrete_fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            return False
    return not any(signal.has_listeners(model) for signal in _SIGNALS)


@dataclasses.dataclass
class _Row:
    """What the replay knows about one key: its row (None: absent) and its tombstone."""

    instance: Any
    existed: bool
    tombstone: Tombstone | None
    row_changed: bool = False
    tombstone_changed: bool = False
    deleted: bool = False
    """The stored row is deleted (then maybe created again): a DELETE, which cascades."""


def apply_model_batch(model: Any, payloads: Sequence[TransportPayload]) -> list[Exception | None]:
    """Apply `payloads` (all of `model`, in arrival order) inside the caller's transaction.

    Returns one entry per payload: None when it was handled (applied, or skipped by the rules
    as the single path would), or the error that makes this message fail (bad data). Raises
    `DatabaseError` if a bulk statement fails; the caller rolls back and goes per message.
    """
    using = router.db_for_write(model)
    connection = connections[using]
    errors: list[Exception | None] = [None] * len(payloads)
    events: list[tuple[int, Any, tuple[dict[str, Any], Mark] | Mark, SignalType]] = []
    for index, payload in enumerate(payloads):
        try:
            events.append((index, *_parse(model, payload, connection), payload.signal_type))
        except Exception as exc:  # noqa: BLE001  (BadData and conversion errors fail one message)
            errors[index] = exc
    if not events:
        return errors
    keys = sorted({pk for _, pk, _, _ in events}, key=str)
    _lock_keys(using, model.CQRS_ID, keys)
    rows = _read(model, using, keys)
    for _, pk, event, signal in events:
        row = rows[pk]
        if signal is SignalType.DELETE:
            assert isinstance(event, Mark)
            _replay_delete(model, pk, row, event, using)
        else:
            assert isinstance(event, tuple)
            _replay_save(model, pk, row, *event, sync=signal is SignalType.SYNC, using=using)
    _write(model, using, rows)
    return errors


# -- parsing and reading ----------------------------------------------------------------------


def _parse(
    model: Any, payload: TransportPayload, connection: Any
) -> tuple[Any, tuple[dict[str, Any], Mark] | Mark]:
    """The single path's reading of a message (`decide.read_save` / `read_delete`)."""
    data = payload.instance_data
    if payload.signal_type is SignalType.DELETE:
        return decide.read_delete(model, data)
    pk, mapped, mark = decide.read_save(model, data, connection)
    return pk, (mapped, mark)


def _lock_keys(using: str, cqrs_id: str, keys: list[Any]) -> None:
    """The advisory key locks of the single path, all at once and in its order (PostgreSQL)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(hashtext(%s), hashtext(k))) "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS t(k, n)",
            [cqrs_id, array_param([str(key) for key in keys])],
        )


def _read(model: Any, using: str, keys: list[Any]) -> dict[Any, _Row]:
    manager = model._default_manager.db_manager(using)
    rows = manager.select_for_update().filter(_key_in(model, using, "pk", keys))
    found = {obj.pk: obj for obj in rows}
    tombstones = {
        tomb.instance_pk: tomb
        for tomb in Tombstone.objects.using(using)
        .select_for_update()
        .filter(cqrs_id=model.CQRS_ID)
        .filter(_key_in(Tombstone, using, "instance_pk", [str(key) for key in keys]))
    }
    return {key: _Row(found.get(key), key in found, tombstones.get(str(key))) for key in keys}


def _key_in(model: Any, using: str, name: str, keys: list[Any]) -> Q | RawSQL:
    """`name IN keys`; on PostgreSQL as `= ANY(array)`, one parameter instead of thousands."""
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    connection = connections[using]
    array = array_type(field, connection) if connection.vendor == "postgresql" else None
    if array is None:
        return Q(**{f"{name}__in": keys})
    column = f"{connection.ops.quote_name(model._meta.db_table)}.{connection.ops.quote_name(field.column)}"
    ready = READY_TYPES.get(type(field))  # keys are typed already (`mapping.to_pk`)
    values = [
        key if type(key) is ready else field.get_db_prep_value(key, connection) for key in keys
    ]
    return RawSQL(
        f"{column} = ANY(%s::{array})", (array_param(values),), output_field=BooleanField()
    )


# -- replay (the decisions of `replica.decide`, carried out in memory) ------------------------


def _replay_save(
    model: Any,
    pk: Any,
    row: _Row,
    mapped: dict[str, Any],
    incoming: Mark,
    *,
    sync: bool,
    using: str,
) -> None:
    instance = row.instance
    tomb = decide.tombstone_mark(row.tombstone)
    decision = decide.decide_save(
        row=None if instance is None else decide.row_mark(instance),
        incoming=incoming,
        sync=sync,
        tombstone=lambda: tomb,
    )
    decide.report(decision, model.CQRS_ID, pk, using)
    if decision.action is Action.CREATE:
        row.instance = model(**mapped)
        row.row_changed = True
    elif decision.action is Action.UPDATE:
        for key, value in mapped.items():
            setattr(instance, key, value)
        row.row_changed = True


def _replay_delete(model: Any, pk: Any, row: _Row, delete: Mark, using: str) -> None:
    decision = decide.decide_delete(
        row=None if row.instance is None else decide.row_mark(row.instance),
        delete=delete,
        tombstone=decide.tombstone_mark(row.tombstone),
    )
    decide.report(decision, model.CQRS_ID, pk, using)
    if decision.action is Action.DELETE:
        row.instance = None
        row.row_changed = True
        row.deleted = row.existed
    if decision.write_tombstone:
        if row.tombstone is None:
            row.tombstone = Tombstone(
                cqrs_id=model.CQRS_ID,
                instance_pk=str(pk),
                cqrs_revision=delete.revision,
                cqrs_updated=delete.updated,
            )
        else:
            row.tombstone.cqrs_revision = delete.revision
            row.tombstone.cqrs_updated = delete.updated
        row.tombstone_changed = True


# -- writing ---------------------------------------------------------------------------------


def _write(model: Any, using: str, rows: dict[Any, _Row]) -> None:
    gone = [key for key, row in rows.items() if row.deleted]
    if gone:  # a QuerySet delete, so that cascades to other replica models still happen
        model._base_manager.using(using).filter(pk__in=gone).delete()
    changed = []
    for row in rows.values():
        if row.row_changed and row.instance is not None:
            row.instance._state.adding = row.deleted or not row.existed
            changed.append(row.instance)
    if changed:
        pk_name = model._meta.pk.name
        fields = [f.name for f in model._meta.concrete_fields if not f.primary_key]
        upsert(model, using, changed, [pk_name], fields)
    tombstones = [
        row.tombstone
        for row in rows.values()
        if row.tombstone is not None and row.tombstone_changed
    ]
    if tombstones:
        now = timezone.now()
        if connections[using].features.supports_update_conflicts_with_target:
            # Stored ones are inserted afresh (without their id) and meet ON CONFLICT.
            tombstones = [
                Tombstone(
                    cqrs_id=t.cqrs_id,
                    instance_pk=t.instance_pk,
                    cqrs_revision=t.cqrs_revision,
                    cqrs_updated=t.cqrs_updated,
                    deleted_at=now,
                )
                for t in tombstones
            ]
        else:
            for tomb in tombstones:
                tomb.deleted_at = now
        upsert(
            Tombstone,
            using,
            tombstones,
            ["cqrs_id", "instance_pk"],
            ["cqrs_revision", "cqrs_updated", "deleted_at"],
        )
