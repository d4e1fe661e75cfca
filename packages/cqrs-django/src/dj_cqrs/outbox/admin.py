"""Read-only admin of outbox rows, with a "publish again" action (see `dj_cqrs.admin`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest

from cqrs_core.constants import SignalType
from dj_cqrs.controller import producer
from dj_cqrs.observability.status_admin import StatusPageMixin
from dj_cqrs.outbox import committed, retention, rows
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.settings import outbox_settings

if TYPE_CHECKING:
    _OutboxAdminBase = admin.ModelAdmin[OutboxEvent]
else:  # ModelAdmin is not subscriptable at run time
    _OutboxAdminBase = admin.ModelAdmin


class PendingFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("pending", "pending"), ("set_aside", "set aside"), ("sent", "sent")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "pending":
            return queryset.filter(sent_at__isnull=True)
        if self.value() == "set_aside":
            return queryset.filter(sent_at__isnull=True, set_aside_at__isnull=False)
        if self.value() == "sent":
            return queryset.filter(sent_at__isnull=False)
        return queryset


class OutboxEventAdmin(StatusPageMixin, _OutboxAdminBase):
    """Registered by `dj_cqrs.admin` on the default site (never on import of this module).

    Also serves the replication status page, `status/` (see `StatusPageMixin`).
    """

    list_display = (
        "id",
        "signal_type",
        "cqrs_id",
        "instance_pk",
        "queue",
        "created_at",
        "sent_at",
        "attempts",
        "set_aside_at",
    )
    list_filter = (PendingFilter, "signal_type", "cqrs_id")
    search_fields = ("=instance_pk", "cqrs_id")
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    actions = ("publish_again", "retry_set_aside")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_publish_permission(self, request: HttpRequest) -> bool:
        """Sending events changes replicas: the actions need `change_outboxevent`, although
        the rows themselves cannot be edited here (issue 14: view was enough)."""
        opts = self.opts
        codename = get_permission_codename("change", opts)
        return bool(request.user.has_perm(f"{opts.app_label}.{codename}"))

    @admin.action(description="Put set-aside events back for the relay", permissions=["publish"])
    def retry_set_aside(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        count = retention.retry(queryset.db, ids)
        self.message_user(request, f"{count} set-aside event(s) put back.", messages.SUCCESS)

    @admin.action(description="Publish again", permissions=["publish"])
    def publish_again(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        """Send the selected events now (sent or not), in id order, and mark them sent.

        A SAVE or SYNC carries the row's current state (serialized now), never the old one.
        A DELETE of a row that exists again is not sent: it would delete the new row on replicas.
        """
        selected = list(queryset.order_by("id"))
        using = queryset.db
        revived = _revived_deletes(using, selected)
        if revived:
            self.message_user(
                request,
                f"{len(revived)} DELETE event(s) not sent: their row exists again on the "
                f"master (ids {', '.join(str(r.id) for r in revived[:10])}). Sync it instead.",
                level=messages.WARNING,
            )
            selected = [r for r in selected if r not in revived]
        if not selected:
            return
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


def _revived_deletes(using: str, selected: list[OutboxEvent]) -> list[OutboxEvent]:
    """DELETE rows whose instance exists on the master now."""
    from dj_cqrs.registries import MasterRegistry

    found: list[OutboxEvent] = []
    for row in selected:
        if row.signal_type != SignalType.DELETE.value:
            continue
        model = MasterRegistry.get_model_by_cqrs_id(row.cqrs_id)
        if (
            model is not None
            and model._default_manager.using(using).filter(pk=row.instance_pk).exists()
        ):
            found.append(row)
    return found
