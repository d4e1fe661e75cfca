from __future__ import annotations

from django.contrib import admin

from cqrs_testproject.master_app.models import Author, Product
from dj_cqrs.admin import CQRSAdminMasterSyncMixin


@admin.register(Product)
class ProductAdmin(CQRSAdminMasterSyncMixin, admin.ModelAdmin):
    list_display = ("id", "name", "cqrs_revision")


admin.site.register(Author)
