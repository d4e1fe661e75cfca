"""Django admin integration: an action that re-sends selected master rows to replicas."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import ngettext

from dj_cqrs.outbox import admin as _outbox_admin  # noqa: F401  (registers the outbox admin)


class CQRSAdminMasterSyncMixin:
    """ModelAdmin mixin adding the "Synchronize with CQRS replicas" action."""

    actions: Any = ("sync_items",)

    def _cqrs_sync_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """Adjust the queryset before syncing (e.g. select_related for CQRS_SERIALIZER)."""
        return queryset

    @admin.action(description="Synchronize with CQRS replicas")
    def sync_items(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """Send a SYNC for every selected instance and report how many were sent."""
        synced = sum(1 for item in self._cqrs_sync_queryset(queryset) if item.cqrs_sync())
        message = ngettext(
            "%(count)d item was queued for CQRS synchronization.",
            "%(count)d items were queued for CQRS synchronization.",
            synced,
        ) % {"count": synced}
        self.message_user(request, message, level=messages.SUCCESS)  # type: ignore[attr-defined]
