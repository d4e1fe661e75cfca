"""The replica's copy of the master's products, and a log of what was applied when."""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from django.db import models
from django.utils import timezone

from dj_cqrs.mixins import ReplicaMixin


class Product(ReplicaMixin):
    """Read-only copy of `shop.Product`, under the storefront's own field names.

    The payload nests the category (`{"id": .., "name": ..}`), so this model takes the data
    itself (`CQRS_CUSTOM_SERIALIZATION`) and flattens it in `cqrs_create` / `cqrs_update`.
    """

    CQRS_ID = "product"
    CQRS_MAPPING: ClassVar[dict[str, str]] = {
        "id": "id",
        "sku": "sku",
        "name": "title",  # master `name` -> replica `title`
        "price": "price",
        "stock": "stock",
        "category": "category",
    }
    CQRS_CUSTOM_SERIALIZATION = True
    CQRS_META = True  # receive the event's meta: the master's write time (see ApplyLog)

    id = models.IntegerField(primary_key=True)
    sku = models.CharField(max_length=32)
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    previous_price = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="Before the last change."
    )
    stock = models.IntegerField()
    category_id = models.IntegerField()
    category_name = models.CharField(max_length=100)
    applied_at = models.DateTimeField(help_text="When this replica last wrote the row.")

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.sku} {self.title}"

    @staticmethod
    def _values(data: Mapping[str, Any]) -> dict[str, Any]:
        category = data["category"]
        return {
            "sku": data["sku"],
            "title": data["title"],
            "price": Decimal(str(data["price"])),
            "stock": int(data["stock"]),
            "category_id": int(category["id"]),
            "category_name": category["name"],
            "cqrs_revision": data["cqrs_revision"],
            "cqrs_updated": data["cqrs_updated"],
            "applied_at": timezone.now(),
        }

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        product = cls.objects.create(id=mapped_data["id"], **cls._values(mapped_data))
        ApplyLog.record("SYNC" if sync else "SAVE", product.pk, meta)
        return product

    def cqrs_update(self, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        values = self._values(mapped_data)
        old = (previous_data or {}).get("price")  # sent because `price` is a tracked field
        if old is not None and Decimal(str(old)) != values["price"]:
            values["previous_price"] = Decimal(str(old))
        for key, value in values.items():
            setattr(self, key, value)
        self.save()
        ApplyLog.record("SYNC" if sync else "SAVE", self.pk, meta)
        return self

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):  # type: ignore[no-untyped-def]
        deleted = super().cqrs_delete(master_data, meta)
        ApplyLog.record("DELETE", master_data.get("id"), meta)
        return deleted


class ApplyLog(models.Model):
    """One row per event this replica applied, written in the same transaction as the change."""

    signal_type = models.CharField(max_length=10)
    product_id = models.IntegerField()
    written_at = models.FloatField(null=True, help_text="Master time of the event (epoch s).")
    applied_at = models.FloatField(help_text="Replica time of the write (epoch s).")

    def __str__(self) -> str:
        return f"{self.signal_type} product {self.product_id}"

    @classmethod
    def record(cls, signal_type: str, product_id: Any, meta: Any) -> None:
        written = meta.get("written_at") if isinstance(meta, Mapping) else None
        cls.objects.create(
            signal_type=signal_type,
            product_id=int(product_id),
            written_at=written,
            applied_at=time.time(),
        )

    @property
    def lag(self) -> datetime.timedelta | None:
        if self.written_at is None:
            return None
        return datetime.timedelta(seconds=self.applied_at - self.written_at)
