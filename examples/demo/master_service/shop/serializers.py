"""`Product.CQRS_SERIALIZER`: the payload replicas receive, with the related category inlined.

Any class taking the instance and exposing `.data` will do (a DRF serializer is the usual one).
"""

from __future__ import annotations

from typing import Any


class ProductSerializer:
    def __init__(self, instance: Any) -> None:
        self.instance = instance

    @property
    def data(self) -> dict[str, Any]:
        product = self.instance
        return {
            "id": product.pk,
            "sku": product.sku,
            "name": product.name,
            "price": str(product.price),
            "stock": product.stock,
            "category": {"id": product.category_id, "name": product.category.name},
        }
