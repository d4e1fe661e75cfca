"""Admin of the master, with the "Synchronize with CQRS replicas" action on products."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet

from dj_cqrs.admin import CQRSAdminMasterSyncMixin
from shop.models import Category, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("id", "name")


@admin.register(Product)
class ProductAdmin(CQRSAdminMasterSyncMixin, admin.ModelAdmin):
    list_display = ("id", "sku", "name", "category", "price", "stock", "cqrs_revision")
    list_display_links = ("id", "sku")
    list_select_related = ("category",)
    readonly_fields = ("cqrs_revision", "cqrs_updated")

    def _cqrs_sync_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("category")
