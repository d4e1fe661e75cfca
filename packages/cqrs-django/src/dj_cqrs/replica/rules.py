"""When a replica applies an event, as pure functions (no database), so they are easy to test.

`dj_cqrs.replica.decide` combines them into the one decision both apply paths (per message and
bulk) take; `log_verdict` words the revision verdicts in the log.

Revisions (wire reference §3): a row starts at `cqrs_revision` 0 on the master and gains 1 per
committed update; a DELETE carries the last revision + 1 and the master's time of the delete.

Tombstone rule: a replica keeps, per (CQRS_ID, pk), the revision and `cqrs_updated` of the
last DELETE it applied. A SAVE or SYNC for a pk with a tombstone is *stale* (it describes the
deleted row, so it is skipped) when

    incoming cqrs_revision < tombstone revision
    AND incoming cqrs_updated <= tombstone cqrs_updated

A row genuinely re-created on the master with the same key starts again at revision 0 but
carries a `cqrs_updated` later than the delete, so it is applied. The same test protects a
re-created row from a late event of its previous life (a retry that overtook the DELETE and
the re-creation): such an event is older than the tombstone, while the row is newer.

Limits: the discriminator between two lives of a key is the master's clock. A row re-created
within the clock skew between master hosts is taken for the old row until its next update or
sync; give re-created rows new keys if that matters.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
from typing import Any

logger = logging.getLogger("django-cqrs")


class Verdict(str, enum.Enum):
    """What to do with a SAVE/SYNC for a row that exists."""

    APPLY = "apply"
    APPLY_AFTER_GAP = "apply after gap"
    """Applied, but events between the stored and incoming revision were lost or filtered."""
    DOWNGRADE = "downgrade"
    """A SYNC older than the stored row: applied (SYNC is the repair path), with a warning."""
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out of order"

    @property
    def applies(self) -> bool:
        return self in (Verdict.APPLY, Verdict.APPLY_AFTER_GAP, Verdict.DOWNGRADE)


def save_verdict(*, stored: int, incoming: int, sync: bool) -> Verdict:
    """Decide a SAVE (or SYNC when `sync`) with revision `incoming` against a row at `stored`."""
    if sync:
        return Verdict.DOWNGRADE if incoming < stored else Verdict.APPLY
    if incoming == stored:
        return Verdict.DUPLICATE
    if incoming < stored:
        return Verdict.OUT_OF_ORDER
    if incoming > stored + 1:
        return Verdict.APPLY_AFTER_GAP
    return Verdict.APPLY


SUSPICIOUS_JUMP = 100_000
"""A SAVE this many revisions ahead of the stored row is applied (lost events are possible:
filtered ones, a purged queue), but logged as an error: a revision from a broken master pins
the row (every real update after it looks out of order) and only a SYNC repairs it. Revisions
are not refused for their size alone: 3.x applies every gap, and only the master knows its
row. A revision the column cannot hold (see `mapping.REVISION_MAX`) is refused."""


def log_verdict(verdict: Verdict, cqrs_id: str, pk: Any, *, stored: int, incoming: int) -> None:
    """Log a verdict that is not a plain APPLY, in django-cqrs's words and levels."""
    if verdict is Verdict.DUPLICATE:
        logger.info(
            "Received duplicate CQRS data: pk = %s, cqrs_revision = %s (%s).", pk, incoming, cqrs_id
        )
    elif verdict is Verdict.OUT_OF_ORDER:
        # Harmless by design: the row already holds a newer revision, so this older event has
        # nothing to add. Routine when several workers apply events of one row (bulk_create then
        # bulk_update with -w 2): info, as duplicates; 3.x logged it as an error.
        logger.info(
            "Wrong CQRS sync order, skipped: pk = %s, cqrs_revision = new %s / existing %s (%s); "
            "the replica already has the newer revision.",
            pk,
            incoming,
            stored,
            cqrs_id,
        )
    elif verdict is Verdict.APPLY_AFTER_GAP and incoming - stored > SUSPICIOUS_JUMP:
        logger.error(
            "Lost or filtered out %s CQRS packages: pk = %s, cqrs_revision = %s (%s). A jump "
            "this large is more likely a bad revision than lost events: until a revision above "
            "it arrives, later SAVEs of this row are skipped as out of order; if the master's "
            "row is not at that revision, repair it with cqrs_sync (a SYNC is always applied).",
            incoming - stored - 1,
            pk,
            incoming,
            cqrs_id,
        )
    elif verdict is Verdict.APPLY_AFTER_GAP:
        logger.warning(
            "Lost or filtered out %s CQRS packages: pk = %s, cqrs_revision = %s (%s).",
            incoming - stored - 1,
            pk,
            incoming,
            cqrs_id,
        )
    elif verdict is Verdict.DOWNGRADE:
        logger.warning(
            "CQRS revision downgrade on sync: pk = %s, cqrs_revision = new %s / existing %s (%s).",
            pk,
            incoming,
            stored,
            cqrs_id,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Mark:
    """A (revision, master time) pair of an event, a row or a tombstone; either may be unknown."""

    revision: int | None
    updated: datetime.datetime | None


def older_than_tombstone(event: Mark, tombstone: Mark) -> bool:
    """True if `event` belongs to the row the tombstone records as deleted (see module doc).

    An unknown part of the tombstone does not count against the event, so a DELETE without
    a revision is judged by time alone and the reverse.
    """
    revision_older = (
        tombstone.revision is None or event.revision is None or event.revision < tombstone.revision
    )
    time_older = (
        tombstone.updated is None or event.updated is None or event.updated <= tombstone.updated
    )
    if tombstone.revision is None and tombstone.updated is None:
        return False
    return revision_older and time_older


def delete_is_stale(*, row_updated: datetime.datetime | None, delete: Mark) -> bool:
    """True if a DELETE predates the row it would remove (the row was re-created after it)."""
    return row_updated is not None and delete.updated is not None and row_updated > delete.updated


def row_is_newer_life(*, row_updated: datetime.datetime | None, tombstone: Mark) -> bool:
    """True if a stored row was created after the tombstone's delete (a re-created row)."""
    return (
        row_updated is not None
        and tombstone.updated is not None
        and row_updated > tombstone.updated
    )
