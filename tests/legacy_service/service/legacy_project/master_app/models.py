"""Master models of the service: every change is published to the replicas by django-cqrs."""

from __future__ import annotations

from django.db import models
from mptt.models import MPTTModel, TreeForeignKey

from dj_cqrs.constants import ALL_BASIC_FIELDS
from dj_cqrs.metas import MasterMeta
from dj_cqrs.mixins import MasterMixin, RawMasterMixin


class Customer(MasterMixin, models.Model):
    CQRS_ID = "customer"
    CQRS_TRACKED_FIELDS = ["name", "status"]

    name = models.CharField(max_length=100)
    email = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(max_length=20, default="active")
    joined = models.DateField(null=True, blank=True)

    def __str__(self):
        return self.name


class Warehouse(MasterMixin, models.Model):  # noqa: DJ008
    CQRS_ID = "warehouse"
    CQRS_FIELDS = ("id", "code", "city", "capacity")
    CQRS_TRACKED_FIELDS = ALL_BASIC_FIELDS

    code = models.CharField(max_length=10, unique=True)
    city = models.CharField(max_length=50)
    capacity = models.IntegerField(default=0)
    internal_note = models.CharField(max_length=100, blank=True, default="")


class Order(MasterMixin, models.Model):  # noqa: DJ008
    CQRS_ID = "order"
    CQRS_SERIALIZER = "legacy_project.master_app.serializers.OrderSerializer"
    CQRS_TRACKED_FIELDS = ("status",)

    DRAFT, PLACED, SHIPPED = "draft", "placed", "shipped"

    number = models.CharField(max_length=20, unique=True)
    status = models.CharField(max_length=10, default=PLACED)
    customer = models.ForeignKey(Customer, related_name="orders", on_delete=models.PROTECT)

    @classmethod
    def relate_cqrs_serialization(cls, queryset):
        return queryset.select_related("customer").prefetch_related("lines")

    def is_sync_instance(self):
        # Drafts are private to this service.
        return self.status != self.DRAFT

    def get_cqrs_meta(self, **kwargs):
        meta = super().get_cqrs_meta(**kwargs)
        meta["order_status"] = self.status
        return meta

    def get_custom_cqrs_delete_data(self):
        return {"number": self.number}


class OrderLine(models.Model):  # noqa: DJ008
    order = models.ForeignKey(Order, related_name="lines", on_delete=models.CASCADE)
    sku = models.CharField(max_length=20)
    quantity = models.IntegerField()


class Node(MPTTModel, RawMasterMixin):
    """Category tree: MPTT and django-cqrs both need a metaclass, so register by hand."""

    CQRS_ID = "node"
    CQRS_TRACKED_FIELDS = ("name", "parent")

    name = models.CharField(max_length=50, unique=True)
    parent = TreeForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
    )


MasterMeta.register(Node)
