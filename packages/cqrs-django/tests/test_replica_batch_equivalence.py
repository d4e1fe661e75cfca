"""The bulk apply path leaves exactly the state the per-message path leaves.

Random master histories (creates, updates, deletes, re-creates of the same keys) are delivered
with duplicates, reordering, SYNCs and bad messages, in random batch sizes; the same batches
are applied once with `CQRS_BULK_APPLY` off and once on, and rows, tombstones, outcomes and
skip counts must be the same. `TypedRef` has a column of every field type the replica maps,
filled with values at the edges of their columns (and, in bad messages, just past them).
"""

from __future__ import annotations

import base64
import collections
import datetime
import random
import uuid
from typing import Any

import pytest
from cqrs_replica_models import (
    AuthorRef,
    Flaky,
    Item,
    ProductRef,
    RawEvents,
    TallyRef,
    TypedRef,
    VoucherRef,
)
from cqrs_testproject.replica_app.models import MappedItem
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from replica_support import at, data, payload

from cqrs_core.constants import SignalType
from cqrs_core.payload import TransportPayload
from dj_cqrs.consumer import make_handler
from dj_cqrs.observability import metrics
from dj_cqrs.replica.batch import supports_bulk
from dj_cqrs.replica.tombstone import Tombstone

MODELS = {
    "item": Item,
    "product": ProductRef,
    "voucher": VoucherRef,
    "mapped_item": MappedItem,
    "typed": TypedRef,
}


def _fields(cqrs_id: str, pk: Any, life: int, rev: int, rnd: random.Random) -> dict[str, Any]:
    value = f"{pk}-{life}-{rev}-{rnd.randint(0, 9)}"
    if cqrs_id == "item":
        return {"name": value}
    if cqrs_id == "voucher":
        return {"code": value, "value": rev}
    if cqrs_id == "mapped_item":
        return {"name": value, "quantity": rev, "ignored": "x"}
    if cqrs_id == "typed":
        return typed_fields(value, rnd)
    return {
        "name": value,
        "quantity": rev,
        "price": f"{rev}.50",
        "release_date": None,
        "published_at": None,
        "is_active": rev % 2 == 0,
        "note": None,
        "external_uuid": str(uuid.UUID(int=life + 1)),
    }


def typed_fields(value: str, rnd: random.Random) -> dict[str, Any]:
    """Values of every `TypedRef` column, as a master's JSON carries them, often at a limit."""

    def edge(low: int, high: int) -> int:
        return rnd.choice([low, high, 0, rnd.randint(low, high)])

    return {
        "char": rnd.choice([value, value.ljust(30, "ü")]),
        "text": value * rnd.randint(0, 50) + "\u2603",
        "slug": rnd.choice(["s", f"s-{rnd.randint(0, 99)}"]),
        "email": rnd.choice([None, f"u{rnd.randint(0, 9)}@example.com"]),
        "small": edge(-32768, 32767),
        "integer": edge(-(2**31), 2**31 - 1),
        "big": edge(-(2**63), 2**63 - 1),
        "positive": edge(0, 2**31 - 1),
        "positive_small": edge(0, 32767),
        "positive_big": edge(0, 2**63 - 1),
        "ratio": rnd.choice([None, 0.0, 0.1, -1.5e300, rnd.uniform(-1e6, 1e6)]),
        "amount": rnd.choice([None, "999999.999", "-0.001", f"{rnd.randint(-99999, 99999)}.5"]),
        "flag": rnd.random() < 0.5,
        "maybe": rnd.choice([None, True, False]),
        "day": rnd.choice([None, "2026-02-28", "0001-01-01", "9999-12-31"]),
        "moment": rnd.choice([None, str(at(rnd.randint(0, 10**7) + 0.123456))]),
        "clock": rnd.choice([None, "00:00:00", "23:59:59.999999", "12:30:01.5"]),
        "span": rnd.choice([None, "1 02:03:04.000005", "-1 00:00:00", "0:00:01"]),
        "token": rnd.choice([None, str(uuid.UUID(int=rnd.getrandbits(128)))]),
        "address": rnd.choice([None, "10.0.0.1", "2001:db8::1", "::ffff:192.0.2.1"]),
        "doc": rnd.choice([None, {"a": [1, "x", None], "n": rnd.randint(0, 9)}, [], "text"]),
        "blob": rnd.choice([None, base64.b64encode(bytes(range(rnd.randint(0, 40)))).decode()]),
        "item": rnd.choice([None, 1, 2]),
    }


TYPED_BAD = {
    "char": "x" * 31,
    "small": 32768,
    "integer": 2**31,
    "big": -(2**63) - 1,
    "positive": -1,
    "positive_big": -1,
    "ratio": [1.0],
    "amount": "1234567.0",
    "flag": "maybe",
    "day": "2026-02-30",
    "moment": "yesterday",
    "clock": "25:00",
    "span": "forever",
    "token": "not-a-uuid",
    "address": "300.1.1.1",
    "item": "one",
}
"""One value just past what each typed column holds: both paths must refuse it alike."""


def history(
    cqrs_id: str, pk: Any, rnd: random.Random, clock: list[float]
) -> list[TransportPayload]:
    """What a master publishes for one key: lives of create, updates, delete."""
    events: list[TransportPayload] = []
    for life in range(rnd.randint(1, 3)):
        revisions = rnd.randint(1, 5)
        for rev in range(revisions):
            clock[0] += 1
            data = {"id": pk, "cqrs_revision": rev, "cqrs_updated": str(at(clock[0]))}
            data.update(_fields(cqrs_id, pk, life, rev, rnd))
            events.append(payload(cqrs_id, data))
        if rnd.random() < 0.6:
            clock[0] += 1
            data = {"id": pk, "cqrs_revision": revisions, "cqrs_updated": str(at(clock[0]))}
            events.append(payload(cqrs_id, data, SignalType.DELETE))
    return events


def deliver(events: list[TransportPayload], rnd: random.Random) -> list[TransportPayload]:
    """Duplicates, local reorders, SYNCs of some saves, and a few bad messages."""
    out: list[TransportPayload] = []
    for event in events:
        out.append(event)
        if rnd.random() < 0.15:
            out.append(event)  # duplicate
        if event.signal_type is SignalType.SAVE and rnd.random() < 0.1:
            out.append(_with(event, signal_type=SignalType.SYNC, queue="replica"))
        if rnd.random() < 0.03:
            bad = dict(event.instance_data)
            bad["cqrs_revision"] = "not a number"
            out.append(_with(event, instance_data=bad))
        if event.cqrs_id == "typed" and event.signal_type is SignalType.SAVE and rnd.random() < 0.1:
            key = rnd.choice(sorted(TYPED_BAD))
            out.append(_with(event, instance_data={**event.instance_data, key: TYPED_BAD[key]}))
    for _ in range(len(out) // 4):  # swap neighbours: out-of-order delivery
        i = rnd.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _with(event: TransportPayload, **changes: Any) -> TransportPayload:
    fields = {
        "signal_type": event.signal_type,
        "cqrs_id": event.cqrs_id,
        "instance_data": event.instance_data,
        "instance_pk": event.instance_pk,
        **changes,
    }
    return TransportPayload(**fields)


def snapshot() -> dict[str, Any]:
    state: dict[str, Any] = {
        cqrs_id: sorted(
            (str(row["id"]), sorted((k, _plain(v)) for k, v in row.items()))
            for row in model.objects.values()
        )
        for cqrs_id, model in MODELS.items()
    }
    state["tombstones"] = sorted(
        Tombstone.objects.values_list("cqrs_id", "instance_pk", "cqrs_revision", "cqrs_updated")
    )
    return state


def _plain(value: Any) -> str:
    """A comparable text of a stored value (bytes, not a memoryview's address)."""
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc)
    return repr(value)


def wipe() -> None:
    for model in MODELS.values():
        model.objects.all().delete()
    Tombstone.objects.all().delete()


def run(batches: list[list[TransportPayload]], settings: Any, *, bulk: bool) -> tuple[Any, Any]:
    state, outcomes, _ = counted_run(batches, settings, bulk=bulk)
    return state, outcomes


def counted_run(
    batches: list[list[TransportPayload]], settings: Any, *, bulk: bool
) -> tuple[Any, Any, collections.Counter[tuple[str, str]]]:
    """State, outcomes and committed skip counts (`metrics.replica_skipped` calls)."""
    settings.CQRS = {
        **settings.CQRS,
        "replica": {**settings.CQRS["replica"], "CQRS_BULK_APPLY": bulk},
    }
    skips: collections.Counter[tuple[str, str]] = collections.Counter()
    handler = make_handler()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "enabled", lambda: True)
        patch.setattr(
            metrics, "replica_skipped", lambda cqrs_id, why: skips.update([(cqrs_id, why)])
        )
        outcomes = []
        for batch in batches:
            # The test's transaction never commits: run each batch's on-commit callbacks (those
            # of rolled-back savepoints are already gone) as its commit would.
            with TestCase.captureOnCommitCallbacks(execute=True):
                outcomes.append([o.kind.value for o in handler(batch)])
    state = snapshot()
    wipe()
    return state, outcomes, skips


def stream(seed: int) -> list[list[TransportPayload]]:
    rnd = random.Random(seed)
    clock = [0.0]
    keys: list[tuple[str, Any]] = [("item", n) for n in range(1, 9)]
    keys += [("product", n) for n in range(1, 5)]
    keys += [("voucher", str(uuid.UUID(int=n))) for n in range(1, 4)]
    keys += [("mapped_item", n) for n in range(1, 4)]
    keys += [("typed", n) for n in range(1, 6)]
    per_key = [history(cqrs_id, pk, rnd, clock) for cqrs_id, pk in keys]
    events: list[TransportPayload] = []
    while any(per_key):  # interleave the keys, keeping each key's publish order
        chosen = rnd.choice([h for h in per_key if h])
        events.append(chosen.pop(0))
    delivered = deliver(events, rnd)
    batches, i = [], 0
    while i < len(delivered):
        size = rnd.choice([1, 3, 10, 40, 100])
        batches.append(delivered[i : i + size])
        i += size
    return batches


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(12))
def test_bulk_path_matches_single_path(seed: int, settings: Any) -> None:
    batches = stream(seed)
    single_state, single_outcomes, single_skips = counted_run(batches, settings, bulk=False)
    bulk_state, bulk_outcomes, bulk_skips = counted_run(batches, settings, bulk=True)
    assert bulk_outcomes == single_outcomes
    assert bulk_state == single_state
    assert bulk_skips == single_skips
    assert any(single_state[cqrs_id] for cqrs_id in MODELS)  # the streams do leave rows
    assert single_state["typed"]  # every field type is written
    assert {why for _, why in single_skips} == {"stale", "duplicate"}
    assert "dead" in {kind for batch in single_outcomes for kind in batch}


@pytest.mark.django_db
def test_supports_bulk_only_for_stock_models() -> None:
    assert supports_bulk(Item) and supports_bulk(MappedItem) and supports_bulk(VoucherRef)
    assert supports_bulk(TypedRef)
    for model in (AuthorRef, Flaky, TallyRef, RawEvents, ProductRef):
        assert not supports_bulk(model), model


def _item_batch(count: int, start_rev: int = 0) -> list[TransportPayload]:
    return [
        payload(
            "item",
            {
                "id": n,
                "cqrs_revision": start_rev,
                "cqrs_updated": str(at(start_rev)),
                "name": f"n{n}",
            },
        )
        for n in range(1, count + 1)
    ]


@pytest.mark.django_db(transaction=True)
def test_bulk_batch_takes_a_few_statements_not_one_per_message() -> None:
    handler = make_handler()
    handler(_item_batch(50))
    with CaptureQueriesContext(connection) as queries:
        outcomes = handler(_item_batch(50, start_rev=1))
    assert {o.kind.value for o in outcomes} == {"applied"}
    assert Item.objects.filter(cqrs_revision=1).count() == 50
    assert len(queries) <= 10, [q["sql"][:80] for q in queries]


@pytest.mark.django_db
def test_failing_bulk_statement_falls_back_to_per_message(settings: Any) -> None:
    def batch() -> list[TransportPayload]:
        return [
            payload(
                "item",
                {
                    "id": 1,
                    "cqrs_revision": 0,
                    "cqrs_updated": str(at(1)),
                    "name": "a",
                    "code": "same",
                },
            ),
            payload(
                "item",
                {
                    "id": 2,
                    "cqrs_revision": 0,
                    "cqrs_updated": str(at(1)),
                    "name": "b",
                    "code": "same",
                },
            ),
            payload("item", {"id": 3, "cqrs_revision": 0, "cqrs_updated": str(at(1)), "name": "c"}),
        ]

    bulk_state, bulk_outcomes = run([batch()], settings, bulk=True)
    single_state, single_outcomes = run([batch()], settings, bulk=False)
    assert bulk_outcomes == single_outcomes == [["applied", "retry", "applied"]]
    assert bulk_state == single_state
    assert [row[0] for row in bulk_state["item"]] == ["1", "3"]


@pytest.mark.django_db(transaction=True)
def test_delete_then_recreate_in_one_batch_deletes_the_stored_row_first() -> None:
    """As the single path does: the DELETE runs (and cascades) before the new row is inserted."""
    handler = make_handler()
    handler(_item_batch(1))
    delete = payload("item", data(1, 1, 10), SignalType.DELETE)
    recreate = payload("item", data(1, 0, 20, name="again"))
    with CaptureQueriesContext(connection) as queries:
        outcomes = handler([delete, recreate])
    assert {o.kind.value for o in outcomes} == {"applied"}
    table = connection.ops.quote_name(Item._meta.db_table)
    assert any(q["sql"].startswith(f"DELETE FROM {table}") for q in queries)
    item = Item.objects.get()
    assert (item.name, item.cqrs_revision) == ("again", 0)
