"""The master's data: products (published to replicas) and categories (not published)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models

from dj_cqrs.mixins import MasterMixin


class Category(models.Model):
    """A plain model: replicas get it inside each product's payload (see `CQRS_SERIALIZER`)."""

    name = models.CharField(max_length=100)

    class Meta:
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Product(MasterMixin):
    """Every committed change becomes a SAVE or DELETE event for the replicas."""

    CQRS_ID = "product"
    CQRS_TRACKED_FIELDS: ClassVar[list[str]] = [
        "price"
    ]  # a changed price also sends the old one (previous_data)
    CQRS_SERIALIZER = "shop.serializers.ProductSerializer"

    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock = models.IntegerField(default=0)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    @classmethod
    def relate_cqrs_serialization(cls, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        return queryset.select_related("category")  # the serializer reads product.category
