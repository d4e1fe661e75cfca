"""Master models of the test project; their shapes follow the golden captures of upstream 3.1.0.

CQRS_IDs: `author`, `product`, `voucher`, `order`, `ticket`, `job` (+ `product_proxy` for the
explicitly registered proxy, and `untracked_note`/`filtered_item` for option tests;
`tracked_all`/`tracked_listed` and the django-mptt `mptt_node` for the 3.x structure tests).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from mptt.models import MPTTModel, TreeForeignKey

from dj_cqrs.metas import MasterMeta
from dj_cqrs.mixins import MasterMixin, RawMasterMixin


class Author(MasterMixin):
    """Simple model mirrored by the replica app."""

    CQRS_ID = "author"

    name = models.CharField(max_length=200)
    email = models.CharField(max_length=200, blank=True, default="")
    birth_date = models.DateField(null=True, blank=True)


class PlainAuthor(models.Model):  # noqa: DJ008
    """Author's own columns without CQRS: the baseline of the master-cost benchmark."""

    name = models.CharField(max_length=200)
    email = models.CharField(max_length=200, blank=True, default="")
    birth_date = models.DateField(null=True, blank=True)


class Product(MasterMixin):
    """Every common field type, two tracked fields (golden `golden_product`)."""

    CQRS_ID = "product"
    CQRS_TRACKED_FIELDS = ("name", "release_date")

    name = models.CharField(max_length=200)
    quantity = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    release_date = models.DateField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    note = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001  (golden shape)
    external_uuid = models.UUIDField(default=uuid.uuid4)


class ProductProxy(Product):
    """A proxy model with its own CQRS_ID: registered only through `MasterMeta.register`."""

    CQRS_ID = "product_proxy"

    class Meta:
        proxy = True


class Voucher(MasterMixin):
    """UUID primary key declared on the model (golden `golden_voucher`)."""

    CQRS_ID = "voucher"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    code = models.CharField(max_length=100)
    value = models.IntegerField(default=0)


class Customer(models.Model):
    """Not a CQRS model; related to Order."""

    name = models.CharField(max_length=200)
    email = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.name


class Order(MasterMixin):
    """Serialized by a CQRS_SERIALIZER with its customer (golden `golden_order`)."""

    CQRS_ID = "order"
    CQRS_SERIALIZER = "cqrs_testproject.master_app.serializers.OrderSerializer"

    number = models.CharField(max_length=50)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    created_at = models.DateTimeField()

    @classmethod
    def relate_cqrs_serialization(cls, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        return queryset.select_related("customer")


class Ticket(MasterMixin):
    """Sends custom data with DELETE (golden `golden_ticket`)."""

    CQRS_ID = "ticket"

    subject = models.CharField(max_length=200)

    def get_custom_cqrs_delete_data(self) -> dict[str, Any]:
        return {"reason": "closed by user", "subject": self.subject, "archived": True, "score": 4}


class Job(MasterMixin):
    """A plain model (golden `golden_failing`)."""

    CQRS_ID = "job"

    payload = models.CharField(max_length=200)


class FilteredItem(MasterMixin):
    """CQRS_FIELDS subset, all fields tracked, sync limited by `is_sync_instance`."""

    CQRS_ID = "filtered_item"
    CQRS_FIELDS = ("id", "title")
    CQRS_TRACKED_FIELDS = "__all__"

    title = models.CharField(max_length=100)
    secret = models.CharField(max_length=100, default="")
    syncable = models.BooleanField(default=True)

    def is_sync_instance(self) -> bool:
        return self.syncable


class SilentItem(MasterMixin):
    """CQRS_PRODUCE = False: never publishes."""

    CQRS_ID = "silent_item"
    CQRS_PRODUCE = False

    title = models.CharField(max_length=100)


class Tally(MasterMixin):
    """Rows of the root end-to-end tests (replica `replica_app.TallyRef` logs every apply).

    `fail_times` > 0 makes the replica fail that many apply attempts of each revision first.
    """

    CQRS_ID = "tally"
    CQRS_TRACKED_FIELDS = ("value",)

    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    fail_times = models.IntegerField(default=0)


class Shelf(models.Model):  # noqa: DJ008
    """Not a CQRS model: the foreign key of the tracked-fields models below."""

    name = models.CharField(max_length=50)


class TrackedAll(MasterMixin):
    """CQRS_TRACKED_FIELDS = '__all__' (compared with TrackedListed, which lists every field)."""

    CQRS_ID = "tracked_all"
    CQRS_TRACKED_FIELDS = "__all__"

    title = models.CharField(max_length=100)
    day = models.DateField(null=True, blank=True)
    shelf = models.ForeignKey(Shelf, null=True, blank=True, on_delete=models.SET_NULL)
    note = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001


class TrackedListed(MasterMixin):
    """The same fields as TrackedAll, every one of them listed in CQRS_TRACKED_FIELDS."""

    CQRS_ID = "tracked_listed"
    CQRS_TRACKED_FIELDS = ("id", "title", "day", "shelf", "note", "cqrs_revision", "cqrs_updated")

    title = models.CharField(max_length=100)
    day = models.DateField(null=True, blank=True)
    shelf = models.ForeignKey(Shelf, null=True, blank=True, on_delete=models.SET_NULL)
    note = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001


class Node(MPTTModel, RawMasterMixin):
    """Diamond inheritance with django-mptt's metaclass: registered by `MasterMeta.register`."""

    CQRS_ID = "mptt_node"
    CQRS_TRACKED_FIELDS = ("name", "parent")

    name = models.CharField(max_length=50, unique=True)
    parent = TreeForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )

    class MPTTMeta:
        order_insertion_by = ["name"]

    def __str__(self) -> str:
        return self.name


MasterMeta.register(Node)
