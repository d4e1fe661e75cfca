"""The admin status page (`<admin>/dj_cqrs/outboxevent/status/`), served by the outbox admin.

A URL of the outbox's ModelAdmin rather than of the AdminSite: it exists wherever the outbox
admin is registered (the default site, or a custom site through `register_outbox_admin`), and
no AdminSite is changed or subclassed. Staff only (the admin's login), and the user needs the
permission to view outbox events (`dj_cqrs.view_outboxevent`), else 403. The numbers come
from `dj_cqrs.observability.status`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import router
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from dj_cqrs.observability import status

if TYPE_CHECKING:
    # What the mixin is combined with, so that `self.opts`, `admin_site` and `super()` are
    # typed; at run time it is a plain class, listed before `admin.ModelAdmin`.
    _ModelAdminBase = admin.ModelAdmin[Any]
else:
    _ModelAdminBase = object


class StatusPageMixin(_ModelAdminBase):
    """ModelAdmin mixin (of `OutboxEventAdmin`) adding the `status/` page."""

    status_template = "admin/dj_cqrs/status.html"

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        page = path(
            "status/",
            self.admin_site.admin_view(self.status_view),
            name=f"{opts.app_label}_{opts.model_name}_status",
        )
        return [page, *super().get_urls()]  # before `<object_id>/`

    def has_status_permission(self, request: HttpRequest) -> bool:
        """Who may read the page: whoever may view the outbox rows."""
        return bool(self.has_view_permission(request))

    def status_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_status_permission(request):
            raise PermissionDenied
        from dj_cqrs.outbox.models import OutboxEvent

        found = status.gather(router.db_for_read(OutboxEvent))
        context = {
            **self.admin_site.each_context(request),
            "title": "CQRS replication status",
            "opts": self.opts,
            "status": found,
            "outbox": _outbox_rows(found.outbox),
            "replicas": [_replica_row(model) for model in found.replicas],
            "dead_letters": found.dead_letters,
            "windows": status.RATE_WINDOWS,
        }
        return TemplateResponse(request, self.status_template, context)


def duration(seconds: float | None) -> str:
    """A short human duration: `850 ms`, `12.3 s`, `4 min 10 s`, `2 h 5 min`, `3 d 4 h`."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _window(seconds: int) -> str:
    return "last minute" if seconds == 60 else f"last {seconds // 60} minutes"


def _outbox_rows(outbox: status.OutboxStatus | None) -> dict[str, Any] | None:
    if outbox is None:
        return None
    rates = [
        {
            "key": str(window),
            "label": _window(window),
            "count": outbox.sent_recently[window],
            "per_minute": f"{outbox.rates[window] * 60:.1f}",
        }
        for window in sorted(outbox.sent_recently)
    ]
    return {
        "unsent": outbox.unsent,
        "set_aside": outbox.set_aside,
        "oldest": outbox.oldest_unsent,
        "oldest_age": duration(outbox.oldest_unsent_age) if outbox.oldest_unsent else "—",
        "rates": rates,
        "keep_days": outbox.keep_days,
        "by_cqrs_id": outbox.by_cqrs_id,
        "alarm": outbox.set_aside > 0,
    }


def _replica_row(model: status.ReplicaModelStatus) -> dict[str, Any]:
    return {
        "cqrs_id": model.cqrs_id,
        "model": model.model,
        "stored": model.stored,
        "last_pk": model.last_pk,
        "last_revision": model.last_revision,
        "last_updated": model.last_updated,
        "event": "DELETE" if model.last_was_delete else "SAVE",
        "age": duration(model.age),
    }
