"""Mixins of master models: the models whose changes are published to replicas."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from django.db import connections, models, router, transaction
from django.db.models import sql
from django.db.models.expressions import Combinable, CombinedExpression, F, Value

from dj_cqrs import conf
from dj_cqrs.constants import ALL_BASIC_FIELDS as ALL_FIELDS
from dj_cqrs.constants import TRACKED_FIELDS_ATTR_NAME
from dj_cqrs.master import pending
from dj_cqrs.master.events import enqueue, produces, row_key, sync_event
from dj_cqrs.master.manager import MasterManager
from dj_cqrs.master.meta import MasterMeta
from dj_cqrs.master.serialization import (
    changed_tracked,
    concrete_data,
    serializer_class,
    tracked_snapshot,
)
from dj_cqrs.master.signals import post_bulk_create, post_update
from dj_cqrs.outbox import one_statement
from dj_cqrs.outbox.settings import outbox_settings
from dj_cqrs.tracker import CQRSTracker

if TYPE_CHECKING:
    from django.db.models import Field
    from typing_extensions import Self

    _Values = Collection[tuple[Field[Any, Any], type[models.Model] | None, Any]]

_SAVE_ARGS = ("force_insert", "force_update", "using", "update_fields")
_CQRS_FIELDS = frozenset({"cqrs_revision", "cqrs_updated"})
_RETURNING_UPDATE = frozenset({"postgresql", "sqlite"})
"""Backends with `UPDATE ... RETURNING` (SQLite from 3.35, as INSERT ... RETURNING)."""

_auto_update: tuple[int, bool] = (-1, False)


def _auto_update_fields() -> bool:
    """`conf.auto_update_fields()`, read once per settings generation (saves are hot)."""
    global _auto_update
    generation = conf.generation()
    if _auto_update[0] != generation:
        _auto_update = (generation, conf.auto_update_fields())
    return _auto_update[1]


def _expression_for(values: Any, attname: str) -> Any:
    """The field of `attname` if the UPDATE `values` set it to an SQL expression."""
    for field, _model, value in values:
        if field.attname == attname and hasattr(value, "resolve_expression"):
            return field
    return None


_update_sql: dict[tuple[Any, ...], tuple[str, bool] | None] = {}
"""The UPDATE of a save by shape (model, alias, vendor, fields, NULLs, revision expression):
its SQL and whether NULLs are parameters (Django >= 6) or written in the SQL, or None for a
shape whose parameters `_update_params` cannot reproduce. Models do not change at runtime, so
entries never go stale."""
_UPDATE_SQL_MAX = 4096
"""Shapes kept at most (one per model and set of NULL fields in practice)."""


def _revision_params(value: Any) -> list[Any] | None:
    """The parameters of the revision's expression: `F()` (already counted) or `F() + 1`."""
    if type(value) is F and getattr(value, "name", None) == "cqrs_revision":
        return []
    if (
        type(value) is CombinedExpression
        and value.connector == "+"
        and type(value.lhs) is F
        and getattr(value.lhs, "name", None) == "cqrs_revision"
        and type(value.rhs) is Value
        and type(value.rhs.value) is int
    ):
        return [value.rhs.value]
    return None


def _update_params(
    instance: models.Model, connection: Any, pk_val: Any, values: Any, revision: Any
) -> tuple[tuple[Any, ...], list[Any]] | None:
    """(shape, parameters) of the save's `UPDATE ... SET ... WHERE pk = %s`, computed as
    Django's compiler does for plain values, NULLs included; None when a value is not plain
    (the user's expressions, model instances, fields with their own placeholders)."""
    shape: list[Any] = [type(instance), connection.alias, connection.vendor]
    params: list[Any] = []
    for field, _model, value in values:
        if field is revision:
            extra = _revision_params(value)
            if extra is None:
                return None
            shape.append((field.attname, len(extra)))
            params += extra
            continue
        if (
            hasattr(value, "resolve_expression")
            or hasattr(value, "prepare_database_save")
            or hasattr(field, "get_placeholder")
        ):
            return None
        value = field.get_db_prep_save(value, connection=connection)
        if hasattr(value, "as_sql"):
            return None
        shape.append((field.attname, value is None))
        params.append(value)  # a None is dropped unless Django passes it (`_update_statement`)
    pk = instance._meta.pk
    if pk is None or not isinstance(pk.column, str):
        return None
    params.append(pk.get_db_prep_value(pk.get_prep_value(pk_val), connection, prepared=True))
    return tuple(shape), params


def _update_statement(
    instance: models.Model,
    base_qs: models.QuerySet[Any],
    connection: Any,
    pk_val: Any,
    values: Any,
    revision: Any,
) -> tuple[str, Any]:
    """The UPDATE of a save (no RETURNING), or ("", ()) if it is not one plain UPDATE.

    Building and compiling Django's UpdateQuery costs more than the statement itself on a fast
    database, so its SQL is kept per shape; the first statement of each shape is compiled by
    Django and its parameters compared with `_update_params`'s, so a shape is only reused when
    both agree.
    """
    where = base_qs.query.where
    shaped = None if where else _update_params(instance, connection, pk_val, values, revision)
    if shaped is not None and shaped[0] in _update_sql:
        known = _update_sql[shaped[0]]
        if known is None:  # a shape known not to be reproducible
            shaped = None
        else:
            cached, nulls = known
            if nulls:
                return cached, tuple(shaped[1])
            return cached, tuple(p for p in shaped[1] if p is not None)
    query = cast("sql.UpdateQuery", base_qs.filter(pk=pk_val).query.chain(sql.UpdateQuery))
    query.add_update_fields(values)
    query.annotations = {}
    if query.get_related_updates():
        return "", ()
    statement, params = query.get_compiler(connection=connection).as_sql()
    if shaped is not None and statement and len(_update_sql) < _UPDATE_SQL_MAX:
        mine = tuple(shaped[1])
        if mine == tuple(params):
            _update_sql[shaped[0]] = (statement, True)
        elif tuple(p for p in mine if p is not None) == tuple(params):
            _update_sql[shaped[0]] = (statement, False)
        else:
            _update_sql[shaped[0]] = None
    return statement, params


class RawMasterMixin(models.Model):
    """Base class for MasterMixin. Users shouldn't use this class directly.

    It has no custom metaclass, so that it can be combined with models that bring their own
    (django-mptt's `MPTTModel`...); such a model publishes once registered with
    `MasterMeta.register(Model)`. MasterMixin adds the metaclass that registers it.
    """

    _cqrs_master_model: ClassVar[bool] = True
    """Marks master models for `MasterMeta.register` (which cannot import this module)."""

    CQRS_ID: ClassVar[str | None] = None
    """Unique CQRS identifier for all microservices."""

    CQRS_PRODUCE: ClassVar[bool] = True
    """If false, no cqrs data is sent through the transport."""

    CQRS_FIELDS: ClassVar[str | Sequence[str]] = ALL_FIELDS
    """Fields to include in the payload, or `'__all__'`."""

    CQRS_SERIALIZER: ClassVar[str | None] = None
    """Dotted path of a serializer class (`Serializer(instance).data`) used instead of CQRS_FIELDS."""

    CQRS_TRACKED_FIELDS: ClassVar[str | Sequence[str] | None] = None
    """Fields whose previous values are sent as `previous_data`, or `'__all__'`."""

    objects = models.Manager()
    cqrs = MasterManager()

    # Declared exactly as django-cqrs 3.x declares them, help texts included: Django compares
    # the whole field definition, so any difference would give every existing master model a
    # new migration on the switch.
    cqrs_revision = models.IntegerField(
        default=0,
        help_text="This field must be incremented on any model update. It's used to for CQRS sync.",
    )
    cqrs_updated = models.DateTimeField(
        auto_now=True,
        help_text="This field must be incremented on every model update. "
        "It's used to for CQRS sync.",
    )

    class Meta:
        abstract = True

    # -- loading and saving ----------------------------------------------------------------

    def save(self, *args: Any, update_cqrs_fields: bool | None = None, **kwargs: Any) -> None:
        """Save, incrementing `cqrs_revision` once per transaction (and savepoint level).

        Args:
            update_cqrs_fields: With `update_fields`, also update the CQRS fields and publish
                (default: `CQRS['master']['CQRS_AUTO_UPDATE_FIELDS']`). Without it a partial
                save publishes nothing, as in django-cqrs.
        """
        kwargs.update(zip(_SAVE_ARGS, args, strict=False))
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        update_fields = kwargs.get("update_fields")
        if update_cqrs_fields is None:
            update_cqrs_fields = _auto_update_fields()

        self.__dict__.pop(one_statement.WRITTEN, None)  # left by a save whose post_save never ran
        connection = transaction.get_connection(using)
        in_atomic = connection.in_atomic_block
        if in_atomic:
            self.__dict__["_cqrs_saves_count"] = self.cqrs_saves_count + 1
        else:  # autocommit: the event leaves with this save, nothing to count (as 3.x)
            self.__dict__["_cqrs_saves_count"] = 0

        bump = True
        if update_fields is not None:
            if update_cqrs_fields and update_fields:
                kwargs["update_fields"] = {*update_fields, *_CQRS_FIELDS}
            else:
                bump = False
        old_revision = self.__dict__.get("cqrs_revision")
        if bump and not self._state.adding and self.pk is not None:
            if in_atomic and pending.is_pending(using, row_key(self)):
                self.cqrs_revision = F("cqrs_revision")  # already counted in this transaction
            else:
                self.cqrs_revision = F("cqrs_revision") + 1
        self.save_tracked_fields()
        try:
            if in_atomic or not produces(self) or not outbox_settings().enabled:
                super().save(**kwargs)
            elif bump and one_statement.eligible(self, connection, RawMasterMixin):
                # the row and its outbox row in one statement, no transaction
                with one_statement.one_statement_save(self, using):
                    super().save(**kwargs)
            else:  # the outbox row must commit with the change: one transaction for both
                with transaction.atomic(using=using, savepoint=False):
                    super().save(**kwargs)
        except BaseException:
            if isinstance(self.__dict__.get("cqrs_revision"), Combinable):
                self.__dict__["cqrs_revision"] = old_revision
            raise
        self._cqrs_refresh_expressions(using)
        self._cqrs_remember_tracked(kwargs.get("update_fields"))

    save.alters_data = True  # type: ignore[attr-defined]

    def _do_update(
        self,
        base_qs: models.QuerySet[Any, Any],
        using: str | None,
        pk_val: Any,
        values: _Values,
        update_fields: Iterable[str] | None,
        forced_update: bool,
        *returning: Sequence[Field[Any, Any]],
    ) -> Any:
        """Django's UPDATE of a save, reading the new `cqrs_revision` back with RETURNING.

        The revision is incremented in SQL (`F() + 1`: concurrent saves never reuse one), so its
        new value must be read back; on PostgreSQL and SQLite 3.35+ the UPDATE itself returns
        it instead of a `refresh_from_db()` SELECT after every save.

        Django >= 6.0 passes `returning_fields` and wants the returned rows back (a list); it
        then reads the fields set by expressions itself, so only a save whose sole such field is
        the revision keeps this statement.
        """
        revision = _expression_for(values, "cqrs_revision")
        alias = using or router.db_for_write(type(self), instance=self)
        connection = connections[alias]
        statement: str = ""
        params: Any = ()
        wanted = list(returning[0]) if returning else None
        if (
            revision is not None
            and (wanted is None or wanted == [revision])
            and not self._meta.select_on_save
            and connection.vendor in _RETURNING_UPDATE
            and connection.features.can_return_rows_from_bulk_insert
        ):
            statement, params = _update_statement(
                self, base_qs, connection, pk_val, values, revision
            )
        if not statement:  # not one plain UPDATE returning the revision: Django's way
            if one_statement.pending(self):
                one_statement.give_up(self)
            return super()._do_update(  # type: ignore[misc]
                base_qs, using, pk_val, values, update_fields, forced_update, *returning
            )
        done: bool | None = None
        if one_statement.pending(self):
            done = one_statement.update(self, alias, statement, params, revision)
        if done is None:
            column = connection.ops.quote_name(revision.column)
            with connection.cursor() as cursor:
                cursor.execute(f"{statement} RETURNING {column}", params)
                row = cursor.fetchone()
            done = row is not None
            if done:
                self.__dict__[revision.attname] = row[0]
        if wanted is None:
            return done
        return [(self.__dict__[revision.attname],)] if done else []

    def _do_insert(
        self, manager: Any, using: str, fields: Any, returning_fields: Any, raw: bool
    ) -> Any:
        """Django's INSERT of a save, with its outbox row in the same statement when it can."""
        if one_statement.pending(self):
            rows = one_statement.insert(self, using, fields, returning_fields, raw)
            if rows is not None:
                return rows
        return super()._do_insert(  # type: ignore[misc]
            manager, using, fields, returning_fields, raw
        )

    @classmethod
    def from_db(
        cls, db: str | None, field_names: Collection[str], values: Collection[Any], **kwargs: Any
    ) -> Self:
        instance = super().from_db(db, field_names, values, **kwargs)
        instance.__dict__["_cqrs_tracked_initial"] = tracked_snapshot(instance)
        return instance

    def refresh_from_db(
        self,
        using: str | None = None,
        fields: Iterable[str] | None = None,
        from_queryset: models.QuerySet[Self, Self] | None = None,
        **kwargs: Any,
    ) -> None:
        if from_queryset is not None:  # Django >= 5.1 (4.2 has no such argument)
            kwargs["from_queryset"] = from_queryset
        super().refresh_from_db(using=using, fields=fields, **kwargs)
        self._cqrs_remember_tracked(fields)

    def _cqrs_remember_tracked(self, names: Iterable[str] | None) -> None:
        """Take the tracked values just saved or loaded (`names`: only these fields) as the
        state the next save is compared to, as 3.x's field tracker did."""
        if names is None:
            self.__dict__["_cqrs_tracked_initial"] = tracked_snapshot(self)
            return
        by_name = {f.name: f.attname for f in self._meta.concrete_fields}
        fresh = tracked_snapshot(self, {by_name.get(name, name) for name in names})
        if fresh is not None:
            self.__dict__["_cqrs_tracked_initial"] = {
                **(self.__dict__.get("_cqrs_tracked_initial") or {}),
                **fresh,
            }

    def _cqrs_refresh_expressions(self, using: str | None) -> None:
        """Replace the F() expressions of a save (`cqrs_revision`, or the user's
        `obj.stock = F("stock") - 1`) by the values the database holds now, in one query."""
        loaded = self.__dict__
        names = [
            field.attname
            for field in self._meta.concrete_fields
            if isinstance(loaded.get(field.attname), Combinable)
        ]
        if names:
            self.refresh_from_db(using=using, fields=names)

    # -- save counters ---------------------------------------------------------------------

    @property
    def cqrs_saves_count(self) -> int:
        """How many times this instance has been saved within the transaction."""
        return int(self.__dict__.get("_cqrs_saves_count", 0))

    @property
    def is_initial_cqrs_save(self) -> bool:
        """True until the instance is saved a second time in the same transaction."""
        return self.cqrs_saves_count < 2

    def reset_cqrs_saves_count(self) -> None:
        """Reset the counter (done automatically when the transaction commits)."""
        self.__dict__["_cqrs_saves_count"] = 0

    # -- serialization ---------------------------------------------------------------------

    def to_cqrs_dict(self, using: str | None = None, sync: bool = False) -> dict[str, Any]:
        """CQRS serialization for transport payload.

        Args:
            using: Database alias to read from (for CQRS_SERIALIZER, which reloads the row).
            sync: Serialize this instance as it is instead of reloading it.
        """
        if self.CQRS_SERIALIZER:
            instance = self
            if not sync:
                db = using or self._state.db or router.db_for_read(type(self), instance=self)
                queryset = type(self)._base_manager.using(db)
                instance = self.relate_cqrs_serialization(queryset).get(pk=self.pk)
            data = dict(serializer_class(self.CQRS_SERIALIZER)(instance).data)
            data["cqrs_revision"] = instance.cqrs_revision
            data["cqrs_updated"] = str(instance.cqrs_updated)
            return data
        data = concrete_data(self, self.CQRS_FIELDS)
        data["cqrs_revision"] = self.cqrs_revision
        data["cqrs_updated"] = str(self.cqrs_updated)
        return data

    def get_tracked_fields_data(self) -> dict[str, Any] | None:
        """CQRS serialization for tracked fields to include in the transport payload.

        Returns:
            The `previous_data` recorded by the first save of the transaction (see
            `save_tracked_fields`); None if the model tracks nothing or was never saved.
        """
        return self.__dict__.get(TRACKED_FIELDS_ATTR_NAME)  # type: ignore[no-any-return]

    def save_tracked_fields(self) -> None:
        """Record the previous values of the changed tracked fields, before a save writes them.

        Only the first save of a transaction records (`is_initial_cqrs_save`): its event carries
        the values from before the transaction. A new row records `{attname: None}` for each
        tracked field that has a value. `Model.cqrs.bulk_create` calls it for every object.
        """
        if not self.is_initial_cqrs_save:
            return
        before = None if self._state.adding else self.__dict__.get("_cqrs_tracked_initial", {})
        self.__dict__[TRACKED_FIELDS_ATTR_NAME] = changed_tracked(self, before)

    def cqrs_sync(self, using: str | None = None, queue: str | None = None) -> bool:
        """Send this instance to replicas (one `queue`, or all) as a SYNC event.

        As in django-cqrs 3.x, the instance is first reloaded from the database (unless a
        CQRS_SERIALIZER reloads it anyway), so a stale copy never sends old values.

        Returns:
            True if a SYNC was queued (published on commit), False if the instance was never
            saved or no longer exists, the model does not produce, or `is_sync_instance()`
            says no.
        """
        if self._state.adding or not self.CQRS_PRODUCE:
            return False
        db = using or self._state.db or router.db_for_write(type(self), instance=self)
        if not self.CQRS_SERIALIZER:
            try:
                self.refresh_from_db(using=db)
            except type(self).DoesNotExist:  # type: ignore[attr-defined]
                return False
        if not self.is_sync_instance():
            return False
        enqueue(db, [sync_event(self, db, queue, deferred=True)])
        return True

    def is_sync_instance(self) -> bool:
        """Override to sync only some instances (status, age...)."""
        return True

    def get_cqrs_meta(self, **kwargs: Any) -> Any:
        """Metadata of an event: `CQRS['master']['meta_function'](obj=self, **kwargs)` or `{}`."""
        func = conf.import_callable(
            conf.master_setting("meta_function"), "CQRS['master']['meta_function']"
        )
        if func is None:
            return {}
        return func(obj=self, **kwargs)

    @classmethod
    def relate_cqrs_serialization(cls, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        """Override to add select_related/prefetch_related for CQRS_SERIALIZER."""
        return queryset

    def get_custom_cqrs_delete_data(self) -> Any:
        """Override to add a `custom` member to the DELETE payload."""
        return None

    @classmethod
    def call_post_bulk_create(cls, instances: list[Any], using: str | None = None) -> None:
        """Send `post_bulk_create` (used by `Model.cqrs.bulk_create`)."""
        post_bulk_create.send(cls, instances=instances, using=using)

    @classmethod
    def call_post_update(cls, instances: list[Any], using: str | None = None) -> None:
        """Send `post_update` (used by `Model.cqrs.bulk_update`)."""
        post_update.send(cls, instances=instances, using=using)


CQRSTracker.add_to_model(RawMasterMixin)  # `instance.__fields_tracker`, as 3.x's models had


class MasterMixin(RawMasterMixin, metaclass=MasterMeta):
    """Mixin for the master CQRS model, that will send data updates to its replicas."""

    class Meta:
        abstract = True
