"""Sending SYNC events for batches of master rows (`cqrs_sync`, `cqrs_diff_sync`).

Each batch is published in one `produce_many` call through the master's publishing hook
(`dj_cqrs.outbox.writer.publish`), which says whether the broker accepted it. A row that
cannot be serialized is reported and skipped; a batch the broker refused is reported as failed;
in both cases the run goes on with the next rows.

What 3.x printed on stdout (`Sync record failed for pk=...`, the `Done!` block) is printed
there the same way; our own summary goes to stderr.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from django.core.management.base import CommandError
from django.db import router

from cqrs_core.payload import TransportPayload, expires_in
from dj_cqrs import conf
from dj_cqrs.management._progress import Progress
from dj_cqrs.master.events import sync_event
from dj_cqrs.outbox.writer import publish


def check_produces(model: Any) -> None:
    """CommandError if `model` never publishes (`CQRS_PRODUCE = False`)."""
    if not getattr(model, "CQRS_PRODUCE", True):
        raise CommandError(
            f"{model.__name__} ({model.CQRS_ID!r}) sets CQRS_PRODUCE = False, so it cannot be "
            "synced."
        )


@dataclasses.dataclass
class SyncCounts:
    sent: int = 0
    skipped: int = 0
    """Rows whose `is_sync_instance()` is False."""
    failed: int = 0
    processed: int = 0
    """Rows looked at: sent, skipped and failed."""


def done_block(synced: int, processed: int) -> str:
    """The closing lines of 3.x's `cqrs_sync` (stdout), kept for scripts that read them."""
    return f"Done!\n{synced} instance(s) synced.\n{processed} instance(s) processed."


class Syncer:
    """Sends SYNCs of master instances to every replica, or to one replica `queue`.

    Args:
        out: Where a failed row is reported in 3.x's words (the command's stdout).
    """

    def __init__(self, model: Any, queue: str | None, progress: Progress, out: Any) -> None:
        self.model = model
        self.queue = queue or None
        self.progress = progress
        self.out = out
        self.counts = SyncCounts()
        self.outbox_start = _last_outbox_id(router.db_for_write(model))
        """Rows above it are ours: the summary says how many the broker has (`_unsent`)."""
        self.target_checked = self.queue is None

    def send(self, instances: Sequence[Any]) -> None:
        """Publish the SYNCs of one batch and advance the progress by its size."""
        payloads: list[TransportPayload] = []
        failed = skipped = 0
        using = router.db_for_write(self.model)
        for instance in instances:
            try:
                if not instance.is_sync_instance():
                    skipped += 1
                    continue
                using = instance._state.db or using
                _key, entry = sync_event(instance, using, self.queue)
            except Exception as exc:  # noqa: BLE001 (one bad row must not stop the run)
                failed += 1
                # 3.x printed a blank line, then this one.
                self.out.write(
                    f"\nSync record failed for pk={instance.pk}: {type(exc).__name__}: {exc}"
                )
                continue
            payloads.append(entry.payload)
        expires = expires_in(conf.message_ttl())
        ready = [dataclasses.replace(p, expires=expires) for p in payloads]
        if ready and not self.target_checked:
            self.target_checked = True
            if _probe(ready[0], self.model.CQRS_ID):
                self.counts.sent += 1
                ready = ready[1:]
        if ready:
            if publish(ready, using):
                self.counts.sent += len(ready)
            else:
                failed += len(ready)
                first, last = ready[0].instance_pk, ready[-1].instance_pk
                self.progress.note(
                    f"{self.model.CQRS_ID}: the broker did not accept a batch of {len(ready)} "
                    f"SYNC(s) (pk {first!r} to {last!r}); see the django-cqrs log above."
                )
        self.counts.failed += failed
        self.counts.skipped += skipped
        self.counts.processed += len(instances)
        self.progress.advance(len(instances), failed=failed)

    def summary(self) -> str:
        """Our line on stderr: "sent" means the broker has them, "stored" that the relay will."""
        target = f"queue {self.queue!r}" if self.queue else "every replica"
        unsent = _unsent(self.model, self.outbox_start) if self.counts.sent else 0
        if unsent:
            text = (
                f"{self.model.CQRS_ID}: {self.counts.sent} SYNC(s) for {target} stored in the "
                f"outbox, {self.counts.sent - unsent} sent, {unsent} not yet (the broker failed: "
                "`manage.py cqrs_relay` sends them, `cqrs_outbox` shows them)"
            )
        else:
            text = f"{self.model.CQRS_ID}: {self.counts.sent} SYNC(s) sent to {target}"
        if self.counts.skipped:
            text += f", {self.counts.skipped} skipped by is_sync_instance()"
        if self.counts.failed:
            text += f", {self.counts.failed} failed"
        return text + "."

    def raise_if_failed(self) -> None:
        """CommandError (exit code 1) after the run if any row failed."""
        if self.counts.failed:
            raise CommandError(
                f"{self.counts.failed} row(s) of {self.model.CQRS_ID!r} could not be synced "
                "(reported above); fix the cause and run the command again for them."
            )


def _probe(payload: TransportPayload, cqrs_id: str) -> bool:
    """Send the first directed SYNC alone, now: a queue the broker cannot route to (a typo)
    fails the command before anything is stored (issue 15). True if it was sent.

    A broker failure that is not a refusal is not the queue's fault: the SYNC then goes
    through the outbox like the others (False).
    """
    from dj_cqrs.controller import producer
    from dj_cqrs.outbox import routing

    try:
        producer.send([payload])
    except Exception as exc:  # noqa: BLE001  (classified below)
        if routing.refusal(exc):
            raise CommandError(
                f"The broker refused a SYNC of {cqrs_id!r} for queue {payload.queue!r} ({exc}); "
                "nothing was sent. Check the queue name: it is the CQRS['queue'] of the "
                "replica service, which must have started once."
            ) from exc
        return False
    return True


def _last_outbox_id(using: str) -> int | None:
    from dj_cqrs.outbox.models import OutboxEvent

    try:
        return OutboxEvent.objects.using(using).order_by("-id").values_list("id", flat=True).first()
    except Exception:  # noqa: BLE001  (no outbox table: 'on_commit' mode without migrations)
        return None


def _unsent(model: Any, start: int | None) -> int:
    """SYNCs of `model` written since `start` and not sent once this process settled them."""
    from dj_cqrs.outbox import background_publisher
    from dj_cqrs.outbox.models import OutboxEvent
    from dj_cqrs.outbox.settings import outbox_settings

    try:
        settings = outbox_settings()
        if not settings.enabled:
            return 0
        background_publisher.flush(settings.publish_timeout)
        rows = OutboxEvent.objects.using(router.db_for_write(model)).filter(
            cqrs_id=model.CQRS_ID, signal_type="SYNC", sent_at__isnull=True
        )
        if start is not None:
            rows = rows.filter(id__gt=start)
        return rows.count()
    except Exception:  # noqa: BLE001  (a summary must not fail the command)
        return 0
