"""CQRS_SERIALIZER of `Order` (a plain class with `.data`, like the golden capture's)."""

from __future__ import annotations

from typing import Any


class OrderSerializer:
    def __init__(self, instance: Any) -> None:
        self.instance = instance

    @property
    def data(self) -> dict[str, Any]:
        order = self.instance
        return {
            "id": order.pk,
            "number": order.number,
            "total": str(order.total),
            "customer": {
                "id": order.customer.pk,
                "name": order.customer.name,
                "email": order.customer.email,
            },
            "created_at": order.created_at.isoformat(),
            "tags": ["first", "vip"],
        }
