"""Replica models of the test project (mirrors of master_app's `author` and `product`, plus
models that exercise one replica option each)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import django
from django.db import connection, models
from django.db.models import functions  # noqa: F401  (models.functions below)
from django.utils.dateparse import parse_date

from dj_cqrs.mixins import RawReplicaMixin, ReplicaMixin

STAMP_DEFAULT: dict[str, Any] = (
    {"db_default": models.functions.Now()} if django.VERSION >= (5, 0) else {}
)


class AuthorRef(ReplicaMixin):
    """Mirror of `author` with custom serialization (a derived field) and meta."""

    CQRS_ID = "author"
    CQRS_CUSTOM_SERIALIZATION = True
    CQRS_META = True

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=200)
    email = models.CharField(max_length=200, blank=True, default="")
    birth_date = models.DateField(null=True, blank=True)
    display = models.CharField(max_length=420, default="")
    last_meta = models.JSONField(null=True, blank=True)

    @staticmethod
    def _values(data: Mapping[str, Any], meta: Any) -> dict[str, Any]:
        birth = data.get("birth_date")
        return {
            "name": data["name"],
            "email": data.get("email") or "",
            "birth_date": parse_date(birth) if isinstance(birth, str) else birth,
            "display": f"{data['name']} <{data.get('email') or ''}>",
            "last_meta": meta,
            "cqrs_revision": data["cqrs_revision"],
            "cqrs_updated": data["cqrs_updated"],
        }

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        return cls.objects.create(id=mapped_data["id"], **cls._values(mapped_data, meta))

    def cqrs_update(self, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        for key, value in self._values(mapped_data, meta).items():
            setattr(self, key, value)
        self.save()
        return self


class ProductRef(ReplicaMixin):
    """Mirror of `product` with renamed fields (CQRS_MAPPING)."""

    CQRS_ID = "product"
    CQRS_MAPPING: ClassVar[dict[str, str]] = {
        "id": "id",
        "name": "title",
        "quantity": "stock",
        "price": "price",
        "release_date": "release_date",
        "published_at": "published_at",
        "is_active": "is_active",
        "note": "note",
        "external_uuid": "external_uuid",
    }

    id = models.IntegerField(primary_key=True)
    title = models.CharField(max_length=200)
    stock = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    release_date = models.DateField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    note = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001 (as the master)
    external_uuid = models.UUIDField(default=uuid.uuid4)
    previous_title = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001

    def cqrs_update(self, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        self.previous_title = (previous_data or {}).get("title")
        return super().cqrs_update(sync, mapped_data, previous_data, meta)


class VoucherRef(ReplicaMixin):
    """Mirror of `voucher` (UUID primary key)."""

    CQRS_ID = "voucher"

    id = models.UUIDField(primary_key=True)
    code = models.CharField(max_length=100)
    value = models.IntegerField(default=0)


class Item(ReplicaMixin):
    """Plain replica used by the apply-rule tests (no master model)."""

    CQRS_ID = "item"

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)
    code = models.CharField(max_length=20, unique=True, null=True, blank=True)


class DirectSyncOnly(ReplicaMixin):
    """Ignores broadcast SYNCs."""

    CQRS_ID = "direct_only"
    CQRS_ONLY_DIRECT_SYNCS = True

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)


class Flaky(ReplicaMixin):
    """Fails on purpose, as `instance_data['mode']` says: raise, falsy, db (a database error).

    Retries at most twice, 0.25 s apart per attempt so far.
    """

    CQRS_ID = "flaky"

    id = models.IntegerField(primary_key=True)
    mode = models.CharField(max_length=20, default="")

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        mode = mapped_data.get("mode")
        instance = super().cqrs_create(sync, mapped_data, previous_data, meta)
        if mode == "raise":
            raise RuntimeError("flaky replica refuses this row")
        if mode == "falsy":
            return None
        if mode == "db":
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table_for_cqrs_tests")
        return instance

    @staticmethod
    def should_retry_cqrs(current_retry: int, exception: BaseException | None = None) -> bool:
        return current_retry < 2

    @staticmethod
    def get_cqrs_retry_delay(current_retry: int = 0) -> float:
        return 0.25 * (current_retry + 1)


class RawEvents(RawReplicaMixin):
    """Not a model: records what it is given (returns False when asked to)."""

    CQRS_ID = "raw_event"
    CQRS_META = True
    calls: ClassVar[list[tuple[str, dict[str, Any], Any]]] = []

    @classmethod
    def cqrs_save(cls, master_data, previous_data=None, sync=False, meta=None):  # type: ignore[no-untyped-def]
        cls.calls.append(("sync" if sync else "save", dict(master_data), meta))
        return not master_data.get("fail")

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):  # type: ignore[no-untyped-def]
        cls.calls.append(("delete", dict(master_data), meta))
        return True


class ApplyLog(models.Model):
    """One row per committed application of an event to `TallyRef` (counts duplicates)."""

    cqrs_id = models.CharField(max_length=50)
    instance_pk = models.IntegerField()
    cqrs_revision = models.IntegerField()
    kind = models.CharField(max_length=10)

    def __str__(self) -> str:
        return f"{self.kind} {self.cqrs_id}:{self.instance_pk}@{self.cqrs_revision}"


class TallyRef(ReplicaMixin):
    """Mirror of `tally` for the root end-to-end tests.

    Logs every application in `ApplyLog` (inside the apply transaction, so only committed ones
    count), keeps the tracked field's previous value, and fails the first `fail_times` attempts
    of each revision (attempts are counted in files under $CQRS_TEST_ATTEMPTS_DIR, which a
    rollback does not undo). With $CQRS_TEST_APPLY_DELAY (seconds), every save first appends
    `id:revision` to `$CQRS_TEST_ATTEMPTS_DIR/applying.log` and then sleeps that long (slow
    batches for the shutdown tests).
    """

    CQRS_ID = "tally"

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    fail_times = models.IntegerField(default=0)
    previous_value = models.IntegerField(null=True, blank=True)

    @staticmethod
    def _attempt(data: Mapping[str, Any]) -> None:
        folder = os.environ.get("CQRS_TEST_ATTEMPTS_DIR")
        delay = float(os.environ.get("CQRS_TEST_APPLY_DELAY") or 0)
        if delay > 0:
            if folder:
                with open(os.path.join(folder, "applying.log"), "a") as file:
                    file.write(f"{data['id']}:{data.get('cqrs_revision')}\n")
            time.sleep(delay)
        fail_times = int(data.get("fail_times") or 0)
        if not folder or fail_times <= 0:
            return
        path = os.path.join(folder, f"{data['id']}-{data['cqrs_revision']}")
        with open(path, "a") as file:
            file.write(".")
        with open(path) as file:
            attempts = len(file.read())
        if attempts <= fail_times:
            raise RuntimeError(f"tally {data['id']}: failing attempt {attempts} on purpose")

    @staticmethod
    def _log(data: Mapping[str, Any], kind: str) -> None:
        ApplyLog.objects.create(
            cqrs_id="tally",
            instance_pk=int(data["id"]),
            cqrs_revision=int(data.get("cqrs_revision") or 0),
            kind=kind,
        )

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        cls._attempt(mapped_data)
        # an update may arrive first (its create still retrying): keep its previous value too
        mapped_data = {**mapped_data, "previous_value": (previous_data or {}).get("value")}
        instance = super().cqrs_create(sync, mapped_data, previous_data, meta)
        cls._log(mapped_data, "sync" if sync else "create")
        return instance

    def cqrs_update(self, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        self._attempt(mapped_data)
        self.previous_value = (previous_data or {}).get("value")
        result = super().cqrs_update(sync, mapped_data, previous_data, meta)
        self._log(mapped_data, "sync" if sync else "update")
        return result

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):  # type: ignore[no-untyped-def]
        result = super().cqrs_delete(master_data, meta)
        cls._log(master_data, "delete")
        return result

    @staticmethod
    def should_retry_cqrs(current_retry: int, exception: BaseException | None = None) -> bool:
        return current_retry < 10

    @staticmethod
    def get_cqrs_retry_delay(current_retry: int = 0) -> float:
        return 0.2


class MappedItem(ReplicaMixin):
    """Stock replica with renamed fields (CQRS_MAPPING): the bulk apply path maps too."""

    CQRS_ID = "mapped_item"
    CQRS_MAPPING: ClassVar[dict[str, str]] = {"id": "id", "name": "label", "quantity": "qty"}

    id = models.IntegerField(primary_key=True)
    label = models.CharField(max_length=100)
    qty = models.IntegerField(default=0)
    extra = models.CharField(max_length=20, default="kept")


class StampedRef(ReplicaMixin):
    """Stock replica with a column the database fills (`db_default`): bulk upserts leave it
    to the database on insert."""

    CQRS_ID = "stamped"

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)
    stamped_at = models.DateTimeField(null=True, **STAMP_DEFAULT)


class _KwargsHooks(ReplicaMixin):
    """Hooks overridden with `**kwargs` signatures, as django-cqrs projects write them; each
    records the keywords it was given (in `calls` of the concrete class)."""

    calls: ClassVar[list[tuple[str, Any, dict[str, Any]]]]

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)

    class Meta:
        abstract = True

    @classmethod
    def cqrs_save(cls, master_data, **kwargs):  # type: ignore[no-untyped-def]
        cls.calls.append(("save", master_data["id"], kwargs))
        return super().cqrs_save(master_data, **kwargs)

    @classmethod
    def cqrs_create(cls, sync, mapped_data, **kwargs):  # type: ignore[no-untyped-def]
        cls.calls.append(("create", sync, kwargs))
        return super().cqrs_create(sync, mapped_data, **kwargs)

    def cqrs_update(self, sync, mapped_data, **kwargs):  # type: ignore[no-untyped-def]
        type(self).calls.append(("update", sync, kwargs))
        return super().cqrs_update(sync, mapped_data, **kwargs)

    @classmethod
    def cqrs_delete(cls, master_data, **kwargs):  # type: ignore[no-untyped-def]
        cls.calls.append(("delete", master_data["id"], kwargs))
        return super().cqrs_delete(master_data, **kwargs)


class KwargsHooksRef(_KwargsHooks):
    """`**kwargs` hooks without CQRS_META: they must never be given `meta`."""

    CQRS_ID = "kwargs_hooks"
    calls: ClassVar[list[tuple[str, Any, dict[str, Any]]]] = []


class KwargsMetaRef(_KwargsHooks):
    """`**kwargs` hooks with CQRS_META: `meta` comes as a keyword."""

    CQRS_ID = "kwargs_meta"
    CQRS_META = True
    calls: ClassVar[list[tuple[str, Any, dict[str, Any]]]] = []


class TypedRef(ReplicaMixin):
    """Stock replica with a column of every field type the replica maps (the equivalence test
    of the two apply paths covers them all)."""

    CQRS_ID = "typed"

    id = models.BigIntegerField(primary_key=True)
    char = models.CharField(max_length=30)
    text = models.TextField(default="")
    slug = models.SlugField(max_length=30, default="s")
    email = models.EmailField(max_length=60, null=True, blank=True)  # noqa: DJ001
    small = models.SmallIntegerField(default=0)
    integer = models.IntegerField(default=0)
    big = models.BigIntegerField(default=0)
    positive = models.PositiveIntegerField(default=0)
    positive_small = models.PositiveSmallIntegerField(default=0)
    positive_big = models.PositiveBigIntegerField(default=0)
    ratio = models.FloatField(null=True, blank=True)
    amount = models.DecimalField(max_digits=9, decimal_places=3, null=True, blank=True)
    flag = models.BooleanField(default=False)
    maybe = models.BooleanField(null=True, blank=True)
    day = models.DateField(null=True, blank=True)
    moment = models.DateTimeField(null=True, blank=True)
    clock = models.TimeField(null=True, blank=True)
    span = models.DurationField(null=True, blank=True)
    token = models.UUIDField(null=True, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    doc = models.JSONField(null=True, blank=True)
    blob = models.BinaryField(null=True, blank=True)
    item = models.ForeignKey(
        Item, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True
    )
