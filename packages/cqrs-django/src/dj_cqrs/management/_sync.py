"""Sending SYNC events for batches of master rows (`cqrs_sync`, `cqrs_diff_sync`).

Each batch is published in one `produce_many` call through the master's publishing hook
(`dj_cqrs.master.publish.publish`), which says whether the broker accepted it. A row that
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
from dj_cqrs.master.publish import publish


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
        if payloads:
            expires = expires_in(conf.message_ttl())
            ready = [dataclasses.replace(p, expires=expires) for p in payloads]
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
        target = f"queue {self.queue!r}" if self.queue else "every replica"
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
