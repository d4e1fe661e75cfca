"""Plain serializers (no DRF): django-cqrs only needs `Serializer(instance).data`."""

from __future__ import annotations


class OrderSerializer:
    def __init__(self, instance):
        self.instance = instance

    @property
    def data(self):
        order = self.instance
        return {
            "id": order.pk,
            "number": order.number,
            "status": order.status,
            "customer": {"id": order.customer.pk, "name": order.customer.name},
            "lines": [
                {"sku": line.sku, "quantity": line.quantity}
                for line in sorted(order.lines.all(), key=lambda line: line.pk)
            ],
        }
