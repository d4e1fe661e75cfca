from __future__ import annotations

from django.contrib import admin

from dj_cqrs.admin import CQRSAdminMasterSyncMixin
from legacy_project.master_app.models import Customer, Order


@admin.register(Customer)
class CustomerAdmin(CQRSAdminMasterSyncMixin, admin.ModelAdmin):
    list_display = ("id", "name", "status", "cqrs_revision")


@admin.register(Order)
class OrderAdmin(CQRSAdminMasterSyncMixin, admin.ModelAdmin):
    list_display = ("id", "number", "status")

    def _cqrs_sync_queryset(self, queryset):
        return queryset.select_related("customer").prefetch_related("lines")
