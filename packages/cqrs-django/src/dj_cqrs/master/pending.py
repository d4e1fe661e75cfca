"""Events waiting for their transaction to commit.

Every event joins a *group*: the events queued on one database alias at one savepoint level of
one transaction. A group registers a single `transaction.on_commit` callback, so Django drops it
with its savepoint or transaction on rollback (nothing is published) and runs it after commit
(the group is published in one `produce_many` batch). Within a group, one instance gives one
event: a later save replaces the earlier one, and the revision is incremented only once.

With the outbox (`CQRS['master']['publish'] = 'outbox'`, the default) every event is also
written to the outbox table as it is queued, in the same transaction and savepoint (a replaced
event replaces its row), and the on-commit callback only queues the rows, with a copy of each
instance, for the background publisher (`dj_cqrs.outbox.background_publisher`), which serializes them:
nothing on the request's critical path after commit. While `produce` is patched or a 3.x
transport class is configured, and on SQLite without IMMEDIATE transactions (see
`dj_cqrs.outbox.sqlite`), the callback serializes and sends the events itself, as 3.x did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

from django.db import transaction

from cqrs_core.constants import SignalType
from cqrs_core.payload import TransportPayload
from dj_cqrs.controller import producer
from dj_cqrs.master.publish import send_at_commit
from dj_cqrs.master.serialization import is_deferred
from dj_cqrs.outbox import writer
from dj_cqrs.outbox.background_publisher import publish_fresh
from dj_cqrs.outbox.committed import snapshot
from dj_cqrs.outbox.settings import outbox_settings
from dj_cqrs.outbox.sqlite import sends_in_committing_thread

_ATTR = "_cqrs_pending_groups"


@dataclasses.dataclass
class Entry:
    """One event waiting for commit."""

    payload: TransportPayload
    instance: Any = None
    created: bool = False
    """The instance was created in this group: every previous value is None."""
    outbox_id: int | None = None
    """Its outbox row, once written."""
    fresh: bool = False
    """Serialize the instance as it is at commit (no reload for a CQRS_SERIALIZER)."""


class Group:
    """The events of one alias at one savepoint level, published together on commit."""

    def __init__(self, using: str) -> None:
        self.using = using
        self.entries: dict[Hashable, Entry] = {}
        self.done = False

    def __contains__(self, key: Hashable) -> bool:
        return key in self.entries

    def add(self, key: Hashable, entry: Entry) -> Entry | None:
        """Queue `entry`, merged with the one it replaces; return the replaced entry."""
        old = self.entries.pop(key, None)
        if old is not None:
            entry = _merge(old, entry)
        self.entries[key] = entry
        return old

    def __call__(self) -> None:
        """The on-commit callback: hand the group over (errors are logged, never raised).

        Stored events go to the background publisher as they are (it serializes them from the
        committed rows and sets `expires`). Events without an outbox row (`'on_commit'` mode),
        and every event while `produce` is patched or a 3.x transport class is configured, are
        serialized from their instances and sent here, in the committing thread.
        """
        self.done = True
        entries, self.entries = list(self.entries.values()), {}
        for entry in entries:
            reset = getattr(entry.instance, "reset_cqrs_saves_count", None)
            if reset is not None:
                reset()
        if producer.synchronous() or sends_in_committing_thread(self.using):
            send_at_commit(self.using, entries)
            return
        stored = [e for e in entries if e.outbox_id is not None]
        if stored:
            if len(stored) > 1:
                stored.sort(key=_row_id)
            publish_fresh(
                self.using,
                [(e.outbox_id, e.payload) for e in stored],  # type: ignore[misc]
                [_source(e) for e in stored],
            )
        if len(stored) == len(entries):
            return
        send_at_commit(self.using, [e for e in entries if e.outbox_id is None])


def _row_id(entry: Entry) -> int:
    return entry.outbox_id or 0


def _source(entry: Entry) -> Any:
    """The copy of the instance the publisher serializes (None: read from the database)."""
    if entry.instance is None or not is_deferred(entry.payload.instance_data):
        return None
    return snapshot(entry.instance, entry.fresh)


def _merge(old: Entry, new: Entry) -> Entry:
    """Keep the newest state and the oldest previous values of the transaction."""
    if (
        old.payload.signal_type is not SignalType.SAVE
        or new.payload.signal_type is not SignalType.SAVE
    ):
        return new
    previous: dict[str, Any] | None = None
    if old.payload.previous_data is not None or new.payload.previous_data is not None:
        later = dict(new.payload.previous_data or {})
        if old.created:
            later = {name: None for name in later}
        previous = {**later, **(old.payload.previous_data or {})}
    payload = dataclasses.replace(new.payload, previous_data=previous)
    return Entry(payload, new.instance, old.created or new.created, fresh=new.fresh)


def _registered(connection: Any, group: Group) -> bool:
    hooks = getattr(connection, "run_on_commit", None)
    if hooks is None:  # unknown Django internals: never reuse a group (safe, less coalescing)
        return False
    return any(hook[1] is group for hook in hooks)


def current_group(using: str, *, create: bool) -> Group | None:
    """The group of the current transaction and savepoint level on `using`.

    Outside an atomic block there is no group: every event is its own transaction.
    """
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        return Group(using) if create else None
    level = tuple(connection.savepoint_ids)
    groups: dict[tuple[str, ...], Group] = connection.__dict__.setdefault(_ATTR, {})
    group = groups.get(level)
    if group is not None and (group.done or not _registered(connection, group)):
        group = None  # from a committed or rolled-back transaction/savepoint
    if group is None:
        groups.pop(level, None)
        if not create:
            return None
        group = Group(using)
        # Stale groups of finished transactions are dropped here, so the dict stays small.
        for stale in [k for k, g in groups.items() if g.done or not _registered(connection, g)]:
            del groups[stale]
        groups[level] = group
        transaction.on_commit(group, using=using)
    return group


def is_pending(using: str, key: Hashable) -> bool:
    """True if an event for `key` is already queued at the current savepoint level."""
    group = current_group(using, create=False)
    return group is not None and key in group


def enqueue(using: str, events: list[tuple[Hashable, Entry]]) -> None:
    """Queue events until `using` commits (published at once outside an atomic block)."""
    if not events:
        return
    connection = transaction.get_connection(using)
    group = current_group(using, create=True)
    assert group is not None
    if outbox_settings().enabled:
        writer.stage(using, group, events)
    else:
        for key, entry in events:
            group.add(key, entry)
    if not connection.in_atomic_block:
        transaction.on_commit(group, using=using)
