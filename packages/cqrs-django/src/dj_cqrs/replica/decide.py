"""What happens to one replica message: the one decision both apply paths take.

The per-message path (`ReplicaManager`) and the bulk path (`replica.batch`) differ only in how
they read and write rows. Each reads what is stored for the key (the row's revision and
master time, or nothing; the tombstone when asked for it), hands it here with the parsed
message, and carries out the `Decision`:

=============  ==========================================================================
CREATE         no row: insert it
UPDATE         the row exists and the event is newer (or a SYNC): write it
DELETE         delete the row, record the tombstone
TOMBSTONE      no row to delete: record the tombstone only
SKIP_STALE     an older event: an out-of-order SAVE, an event of a deleted row (or of the
               previous life of a re-created one), a DELETE older than the row (the row is
               kept, the tombstone recorded), a DELETE older than the stored tombstone
SKIP_DUPLICATE the stored row (or tombstone) already has this revision
=============  ==========================================================================

Rejection happens before a decision: `read_save` / `read_delete` (one validation, in
`replica.mapping`) raise `BadData` with the reason; the consumer dead-letters it at once
(`consumer._failure` with `errors.classify`, for both paths), a direct `cqrs_save` logs it and
returns None as in django-cqrs.

The rules themselves are the pure functions of `replica.rules`; `report` logs a decision in
django-cqrs's words and counts skips (`cqrs_replica_messages_skipped`, reason stale or
duplicate) once the transaction that made them commits.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from dj_cqrs.observability import metrics
from dj_cqrs.replica import rules
from dj_cqrs.replica.mapping import map_save_data, parse_revision, parse_updated, pk_from_delete
from dj_cqrs.replica.mapping import to_pk as _to_pk
from dj_cqrs.replica.rules import Mark, Verdict

logger = logging.getLogger("django-cqrs")


class Action(str, enum.Enum):
    """What to do with a message (see the module doc)."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    TOMBSTONE = "tombstone"
    SKIP_STALE = "stale"
    SKIP_DUPLICATE = "duplicate"


class Why(str, enum.Enum):
    """Which rule decided a skip (it words the log line)."""

    REVISION = "revision"
    """The revision rule (`rules.save_verdict`); the verdict says which."""
    DELETED_ROW = "deleted row"
    """A SAVE/SYNC for an absent row older than its tombstone."""
    PREVIOUS_LIFE = "previous life"
    """A late SAVE of a row that was deleted and re-created since."""
    ROW_NEWER = "row newer"
    """A DELETE older than the stored (re-created) row: the row is kept."""
    TOMBSTONE = "tombstone"
    """A DELETE for an absent row: the stored tombstone already has it, or a newer one."""


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one message, with what it was decided from (for the log)."""

    action: Action
    incoming: Mark
    row: Mark | None = None
    tombstone: Mark | None = None
    """The stored tombstone, when the rule read it."""
    verdict: Verdict | None = None
    """The revision verdict of a SAVE/SYNC against a stored row."""
    why: Why | None = None
    write_tombstone: bool = False
    """For a DELETE: record (or overwrite) the key's tombstone with the DELETE's mark."""
    sync: bool = False

    @property
    def writes_row(self) -> bool:
        """True if the row is created, updated or deleted."""
        return self.action in (Action.CREATE, Action.UPDATE, Action.DELETE)

    @property
    def skip_reason(self) -> str | None:
        """ "stale" or "duplicate" for a skipped message, None for an applied one."""
        if self.action in (Action.SKIP_STALE, Action.SKIP_DUPLICATE):
            reason: str = self.action.value
            return reason
        return None


def decide_save(
    *, row: Mark | None, incoming: Mark, sync: bool, tombstone: Callable[[], Mark | None]
) -> Decision:
    """Decide a SAVE (a SYNC when `sync`) against the stored `row` (None: absent).

    `tombstone()` returns the key's tombstone; it is called only when a rule needs it (the
    per-message path reads it from the database then).
    """
    if row is None:
        tomb = tombstone()
        if tomb is not None and rules.older_than_tombstone(incoming, tomb):
            return Decision(Action.SKIP_STALE, incoming, None, tomb, why=Why.DELETED_ROW, sync=sync)
        return Decision(Action.CREATE, incoming, None, tomb, sync=sync)
    if (
        not sync
        and incoming.updated is not None
        and row.updated is not None
        and incoming.updated < row.updated
        and (incoming.revision or 0) > (row.revision or 0)
    ):
        # A higher revision that is older than the row: maybe a late event of a previous life
        # of this key (deleted, then re-created). Only then is the tombstone needed.
        tomb = tombstone()
        if (
            tomb is not None
            and rules.older_than_tombstone(incoming, tomb)
            and rules.row_is_newer_life(row_updated=row.updated, tombstone=tomb)
        ):
            return Decision(
                Action.SKIP_STALE, incoming, row, tomb, why=Why.PREVIOUS_LIFE, sync=sync
            )
    verdict = rules.save_verdict(
        stored=row.revision or 0, incoming=incoming.revision or 0, sync=sync
    )
    if verdict.applies:
        action = Action.UPDATE
    elif verdict is Verdict.DUPLICATE:
        action = Action.SKIP_DUPLICATE
    else:
        action = Action.SKIP_STALE
    return Decision(action, incoming, row, verdict=verdict, why=Why.REVISION, sync=sync)


def decide_delete(*, row: Mark | None, delete: Mark, tombstone: Mark | None) -> Decision:
    """Decide a DELETE against the stored `row` (None: absent) and the key's `tombstone`.

    The tombstone is always written unless the stored one is newer; a DELETE older than a
    re-created row keeps the row.
    """
    write = tombstone_supersedes(tombstone, delete)
    if row is not None:
        if rules.delete_is_stale(row_updated=row.updated, delete=delete):
            return Decision(
                Action.SKIP_STALE, delete, row, tombstone, why=Why.ROW_NEWER, write_tombstone=write
            )
        return Decision(Action.DELETE, delete, row, tombstone, write_tombstone=write)
    if tombstone is not None and tombstone == delete:
        return Decision(
            Action.SKIP_DUPLICATE, delete, None, tombstone, why=Why.TOMBSTONE, write_tombstone=write
        )
    if not write:
        return Decision(Action.SKIP_STALE, delete, None, tombstone, why=Why.TOMBSTONE)
    return Decision(Action.TOMBSTONE, delete, None, tombstone, write_tombstone=True)


def tombstone_supersedes(stored: Mark | None, delete: Mark) -> bool:
    """True if a DELETE's mark replaces the stored tombstone (it is not older than it)."""
    if stored is None or stored.updated is None:
        return True
    return delete.updated is not None and delete.updated >= stored.updated


# -- reading a message (the one validation; BadData rejects it) -------------------------------


def read_save(
    model: Any, master_data: Mapping[str, Any], connection: Any = None
) -> tuple[Any, dict[str, Any], Mark]:
    """(primary key, mapped and checked field values, mark) of a SAVE/SYNC.

    `connection`: the model's database, when the caller has it (the bulk path, per batch).

    Raises:
        BadData: the data does not fit the model (see `mapping.map_save_data`).
    """
    mapped = map_save_data(model, master_data, connection)
    pk_name = model._meta.pk.name
    pk = _to_pk(model, mapped[pk_name], connection)
    mapped[pk_name] = pk
    return pk, mapped, Mark(mapped["cqrs_revision"], mapped["cqrs_updated"])


def read_delete(model: Any, master_data: Mapping[str, Any]) -> tuple[Any, Mark]:
    """(primary key, mark) of a DELETE; a DELETE without master time gets the replica's.

    Raises:
        BadData: no usable primary key, revision or time.
    """
    pk = pk_from_delete(model, master_data)
    revision = parse_revision(master_data.get("cqrs_revision"))
    return pk, Mark(revision, parse_updated(master_data.get("cqrs_updated")) or timezone.now())


def row_mark(instance: Any) -> Mark:
    """The mark of a stored replica row."""
    return Mark(instance.cqrs_revision, instance.cqrs_updated)


def tombstone_mark(tombstone: Any) -> Mark | None:
    """The mark of a stored `Tombstone` (None for none)."""
    return None if tombstone is None else Mark(tombstone.cqrs_revision, tombstone.cqrs_updated)


# -- reporting ---------------------------------------------------------------------------------


def report(decision: Decision, cqrs_id: str, pk: Any, using: str) -> None:
    """Log `decision` as django-cqrs does and count a skip when its transaction commits.

    Both apply paths call it for every decision; a skip inside a rolled-back savepoint (a bulk
    batch that falls back to per-message apply) is never counted.
    """
    _log(decision, cqrs_id, pk)
    reason = decision.skip_reason
    if reason is not None and metrics.enabled():
        transaction.on_commit(functools.partial(metrics.replica_skipped, cqrs_id, reason), using)


def _log(decision: Decision, cqrs_id: str, pk: Any) -> None:
    incoming, row, tomb = decision.incoming, decision.row, decision.tombstone
    if decision.verdict is not None:
        assert row is not None
        rules.log_verdict(
            decision.verdict,
            cqrs_id,
            pk,
            stored=row.revision or 0,
            incoming=incoming.revision or 0,
        )
    elif decision.why is Why.DELETED_ROW:
        logger.info(
            "CQRS %s for deleted row skipped: pk = %s, cqrs_revision = %s, deleted at "
            "revision %s (%s).",
            "SYNC" if decision.sync else "SAVE",
            pk,
            incoming.revision,
            tomb.revision if tomb is not None else None,
            cqrs_id,
        )
    elif decision.why is Why.PREVIOUS_LIFE:
        logger.info(
            "CQRS event of a deleted, re-created row skipped: pk = %s, cqrs_revision = %s (%s).",
            pk,
            incoming.revision,
            cqrs_id,
        )
    elif decision.why is Why.ROW_NEWER:
        logger.info(
            "CQRS DELETE older than the stored row (re-created), row kept: pk = %s (%s).",
            pk,
            cqrs_id,
        )
    elif decision.why is Why.TOMBSTONE:
        logger.debug(
            "CQRS DELETE of an absent row %s: pk = %s, cqrs_revision = %s (%s).",
            "already recorded"
            if decision.action is Action.SKIP_DUPLICATE
            else "older than its tombstone",
            pk,
            incoming.revision,
            cqrs_id,
        )
