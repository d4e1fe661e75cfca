"""Django admin integration: `CQRSAdminMasterSyncMixin`, and the outbox rows on the default site.

This is both the public module of the mixin and the module Django's admin autodiscovery imports.
Importing it never touches a custom `AdminSite` and works without `django.contrib.admin` in
INSTALLED_APPS; when the admin app is installed, the outbox admin is added to the default site
(`django.contrib.admin.site`) unless something registered `OutboxEvent` there already. To show
it on a site of your own: `register_outbox_admin(my_site)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

__all__ = ["CQRSAdminMasterSyncMixin", "register_outbox_admin"]

if TYPE_CHECKING:
    # What the mixin is combined with, so that `self.actions`, `message_user` and `super()`
    # are typed; at run time it is a plain class, listed before `admin.ModelAdmin`.
    _ModelAdminBase = admin.ModelAdmin[Any]
else:
    _ModelAdminBase = object


class CQRSAdminMasterSyncMixin(_ModelAdminBase):
    """ModelAdmin mixin adding the "Synchronize with CQRS replicas" action.

    The action is added to the admin's own `actions` (as in django-cqrs 3.x), so a ModelAdmin
    that lists actions of its own keeps them and gets this one too.
    """

    def get_actions(self, request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The admin's actions plus `sync_items` (unless `actions = None` turns actions off).

        `*args, **kwargs` are passed on: django-stubs declares an `action_location` argument
        for Django 6.
        """
        actions = self.actions
        if actions is not None and "sync_items" not in actions:
            self.actions = [*actions, "sync_items"]
        return super().get_actions(request, *args, **kwargs)

    def _cqrs_sync_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """Adjust the queryset before syncing (e.g. select_related for CQRS_SERIALIZER)."""
        return queryset

    @admin.action(description="Synchronize with CQRS replicas")
    def sync_items(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """Send a SYNC for every selected instance and report what could not be synced.

        The message is django-cqrs 3.x's, word for word (`N successfully synced. M failed:
        [...]`), since tests and scripts of existing services read it.
        """
        items = list(self._cqrs_sync_queryset(queryset))
        failed = [item for item in items if not item.cqrs_sync()]
        # 3.x counted the selection before `_cqrs_sync_queryset` narrowed it; we count what
        # was really synced (the same number unless that hook filters).
        self.message_user(
            request,
            f"{len(items) - len(failed)} successfully synced. {len(failed)} failed: {failed}",
        )


def register_outbox_admin(site: admin.AdminSite | None = None) -> None:
    """Show the outbox rows on `site` (default: `django.contrib.admin.site`), once.

    Raises:
        LookupError: no `site` was given and `django.contrib.admin` is not installed.
    """
    from dj_cqrs.outbox.admin import OutboxEventAdmin
    from dj_cqrs.outbox.models import OutboxEvent

    target = site if site is not None else admin.site
    if not target.is_registered(OutboxEvent):
        target.register(OutboxEvent, OutboxEventAdmin)


if apps.models_ready and apps.is_installed("django.contrib.admin"):
    register_outbox_admin()
