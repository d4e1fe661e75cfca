"""Read-only admin of outbox rows, with a "publish again" action (see `dj_cqrs.admin`)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from dj_cqrs.controller import producer
from dj_cqrs.outbox import committed, rows
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.settings import outbox_settings


class PendingFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("pending", "pending"), ("sent", "sent")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "pending":
            return queryset.filter(sent_at__isnull=True)
        if self.value() == "sent":
            return queryset.filter(sent_at__isnull=False)
        return queryset


class OutboxEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Registered by `dj_cqrs.admin` on the default site (never on import of this module)."""

    list_display = (
        "id",
        "signal_type",
        "cqrs_id",
        "instance_pk",
        "queue",
        "created_at",
        "sent_at",
        "attempts",
    )
    list_filter = (PendingFilter, "signal_type", "cqrs_id")
    search_fields = ("=instance_pk", "cqrs_id")
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    actions = ("publish_again",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Publish again")
    def publish_again(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        """Send the selected events now (sent or not), in id order, and mark them sent."""
        selected = list(queryset.order_by("id"))
        if not selected:
            return
        using = queryset.db
        filled = committed.fill(using, list(zip(selected, rows.payloads_of(selected), strict=True)))
        if filled.failed:
            self.message_user(
                request,
                f"{len(filled.failed)} event(s) cannot be serialized (see the log): "
                f"{filled.failed[0][1]}",
                level=messages.ERROR,
            )
            return
        try:
            producer.send([payload for _, payload in filled.ready])
        except Exception as exc:  # noqa: BLE001  (reported to the admin user)
            self.message_user(
                request, f"The broker did not accept the events: {exc}", level=messages.ERROR
            )
            return
        keep = outbox_settings().keep_days
        OutboxEvent.objects.using(using).filter(id__in=[r.id for r in selected]).update(
            last_error=""
        )
        rows.mark_sent(using, [r.id for r in selected if r.sent_at is None], keep)
        self.message_user(request, f"{len(selected)} event(s) published again.", messages.SUCCESS)
