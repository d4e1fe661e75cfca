"""The outbox table: one row per event, written in the transaction of the model change."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class OutboxEvent(models.Model):
    """One serialized event waiting to be sent (or sent and kept for `keep_days`).

    Rows are sent in `id` order; the relay never sends a row's event before an earlier unsent
    event of the same `(cqrs_id, instance_pk)`.
    """

    id = models.BigAutoField(primary_key=True)
    cqrs_id = models.CharField(max_length=255)
    instance_pk = models.CharField(max_length=255, help_text="Primary key, as a string.")
    signal_type = models.CharField(max_length=10)
    queue = models.CharField(  # noqa: DJ001  (None: every replica)
        max_length=255, null=True, blank=True, help_text="Replica queue of a directed SYNC."
    )
    body = models.TextField(help_text="The wire JSON of the event (sent with a fresh `expires`).")
    created_at = models.DateTimeField(help_text="When the event was written (its transaction).")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="Empty while pending.")
    attempts = models.PositiveIntegerField(default=0, help_text="Failed or skipped fast sends.")
    last_error = models.TextField(blank=True, default="")
    claimed_by = models.CharField(max_length=32, blank=True, default="")
    claimed_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Until then the row belongs to its claimant: the publisher of the process that "
        "committed it, or a relay (databases without SKIP LOCKED). Nobody else sends it.",
    )
    set_aside_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The broker refused the event (see last_error): it is not sent until retried "
        "with `manage.py cqrs_outbox retry`, and holds back no other row.",
    )
    trace_context = models.TextField(  # noqa: DJ001  (None: no trace, the common case)
        null=True,
        blank=True,
        help_text="Headers sent beside the body, as JSON: the W3C trace context of the save "
        "(CQRS['tracing']). Empty when tracing is off or the event came from elsewhere.",
    )

    class Meta:
        app_label = "dj_cqrs"
        verbose_name = "outbox event"
        ordering = ("-id",)
        indexes = [
            models.Index(
                fields=["id"], condition=Q(sent_at__isnull=True), name="dj_cqrs_outbox_pending"
            ),
            models.Index(
                fields=["cqrs_id", "instance_pk", "id"],
                condition=Q(sent_at__isnull=True),
                name="dj_cqrs_outbox_row",
            ),
            models.Index(fields=["sent_at"], name="dj_cqrs_outbox_sent"),
        ]

    def __str__(self) -> str:
        return f"{self.signal_type} {self.cqrs_id}:{self.instance_pk} (#{self.id})"

    @property
    def pending(self) -> bool:
        return self.sent_at is None
