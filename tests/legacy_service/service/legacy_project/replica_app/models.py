"""Replica models of the service: filled from the masters' events by django-cqrs."""

from __future__ import annotations

from django.db import models

from dj_cqrs.mixins import ReplicaMixin


class CustomerRef(ReplicaMixin, models.Model):  # noqa: DJ008
    CQRS_ID = "customer"
    CQRS_MAPPING = {
        "id": "id",
        "name": "full_name",
        "status": "state",
    }

    id = models.IntegerField(primary_key=True)
    full_name = models.CharField(max_length=100)
    state = models.CharField(max_length=20)


class OrderRef(ReplicaMixin, models.Model):  # noqa: DJ008
    CQRS_ID = "order"
    CQRS_CUSTOM_SERIALIZATION = True
    CQRS_META = True
    CQRS_SELECT_FOR_UPDATE = True

    id = models.IntegerField(primary_key=True)
    number = models.CharField(max_length=20)
    customer_name = models.CharField(max_length=100)
    total_quantity = models.IntegerField(default=0)
    previous_status = models.CharField(max_length=10, null=True)  # noqa: DJ001
    source = models.CharField(max_length=50, null=True)  # noqa: DJ001

    @staticmethod
    def _flatten(mapped_data, meta):
        return {
            "id": mapped_data["id"],
            "number": mapped_data["number"],
            "customer_name": mapped_data["customer"]["name"],
            "total_quantity": sum(line["quantity"] for line in mapped_data["lines"]),
            "source": (meta or {}).get("service"),
            "cqrs_revision": mapped_data["cqrs_revision"],
            "cqrs_updated": mapped_data["cqrs_updated"],
        }

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):
        return cls.objects.create(**cls._flatten(mapped_data, meta))

    def cqrs_update(self, sync, mapped_data, **kwargs):
        for name, value in self._flatten(mapped_data, kwargs.get("meta")).items():
            setattr(self, name, value)
        self.previous_status = (kwargs.get("previous_data") or {}).get("status")
        self.save()
        return self

    @staticmethod
    def should_retry_cqrs(current_retry, exception=None):
        if isinstance(exception, ValueError):
            return False
        return current_retry < 3

    @staticmethod
    def get_cqrs_retry_delay(current_retry):
        return 2**current_retry


class NodeRef(ReplicaMixin, models.Model):  # noqa: DJ008
    CQRS_ID = "node"

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=50)
    parent = models.IntegerField(null=True)
    level = models.IntegerField(default=0)


class WarehouseFeed(ReplicaMixin):
    """Warehouses are not stored here: their events only feed an in-process list."""

    CQRS_ID = "warehouse"
    CQRS_NO_DB_OPERATIONS = True

    received = []

    class Meta:
        abstract = True

    @classmethod
    def cqrs_save(cls, master_data, previous_data=None, sync=False, meta=None):
        cls.received.append(("save", master_data["code"], sync))
        return True

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):
        cls.received.append(("delete", master_data["id"], False))
        return True
