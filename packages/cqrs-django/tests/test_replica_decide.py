"""`replica.decide`: the one decision both apply paths take, for every stored state and kind of
message (no database)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from replica_support import at

from dj_cqrs.replica import decide
from dj_cqrs.replica.decide import Action, Decision, Why
from dj_cqrs.replica.rules import Mark, Verdict

# Stored states of one key. The row is at revision 3, written at t=100; tombstones are of a
# DELETE at revision 4.
NONE = None
ROW = Mark(3, at(100))
OLD_TOMB = Mark(4, at(50))  # a delete before the row's life (the row was re-created since)
TOMB = Mark(4, at(100))  # the row's own delete
RECREATED = Mark(0, at(200))  # a row re-created after TOMB

STATES: dict[str, tuple[Mark | None, Mark | None]] = {
    "absent": (None, None),
    "absent, deleted": (None, TOMB),
    "absent, deleted long ago": (None, OLD_TOMB),
    "row": (ROW, None),
    "row, re-created after delete": (RECREATED, TOMB),
}

SAVES: dict[str, tuple[Mark, bool]] = {
    "SAVE next": (Mark(4, at(110)), False),
    "SAVE same": (Mark(3, at(100)), False),
    "SAVE older": (Mark(2, at(90)), False),
    "SAVE gap": (Mark(9, at(150)), False),
    "SAVE of deleted life": (Mark(3, at(99)), False),
    "SAVE new life": (Mark(0, at(300)), False),
    "SYNC older": (Mark(2, at(90)), True),
    "SYNC same": (Mark(3, at(100)), True),
}

C, U, S, D = Action.CREATE, Action.UPDATE, Action.SKIP_STALE, Action.SKIP_DUPLICATE

SAVE_TABLE: dict[tuple[str, str], Action] = {
    # absent, no tombstone: everything creates
    **{("absent", kind): C for kind in SAVES},
    # absent, deleted at (4, t=100): its own events are stale, a later life creates
    ("absent, deleted", "SAVE next"): C,  # revision 4 at t=110: newer than the delete
    ("absent, deleted", "SAVE same"): S,
    ("absent, deleted", "SAVE older"): S,
    ("absent, deleted", "SAVE gap"): C,
    ("absent, deleted", "SAVE of deleted life"): S,
    ("absent, deleted", "SAVE new life"): C,
    ("absent, deleted", "SYNC older"): S,
    ("absent, deleted", "SYNC same"): S,
    # absent, an older tombstone: nothing it says blocks these
    ("absent, deleted long ago", "SAVE next"): C,
    ("absent, deleted long ago", "SAVE same"): C,
    ("absent, deleted long ago", "SAVE older"): C,
    ("absent, deleted long ago", "SAVE gap"): C,
    ("absent, deleted long ago", "SAVE of deleted life"): C,
    ("absent, deleted long ago", "SAVE new life"): C,
    ("absent, deleted long ago", "SYNC older"): C,
    ("absent, deleted long ago", "SYNC same"): C,
    # a row at revision 3: the revision rule
    ("row", "SAVE next"): U,
    ("row", "SAVE same"): D,
    ("row", "SAVE older"): S,
    ("row", "SAVE gap"): U,
    ("row", "SAVE of deleted life"): D,
    ("row", "SAVE new life"): S,
    ("row", "SYNC older"): U,
    ("row", "SYNC same"): U,
    # a re-created row (revision 0, t=200) over the tombstone of its previous life
    # revision 4 is not below the delete's: not the previous life by the tombstone rule
    ("row, re-created after delete", "SAVE next"): U,
    ("row, re-created after delete", "SAVE same"): S,
    ("row, re-created after delete", "SAVE older"): S,
    ("row, re-created after delete", "SAVE gap"): U,  # revision 9 > the tombstone's 4
    ("row, re-created after delete", "SAVE of deleted life"): S,
    ("row, re-created after delete", "SAVE new life"): D,
    ("row, re-created after delete", "SYNC older"): U,  # a SYNC always applies
    ("row, re-created after delete", "SYNC same"): U,
}


@pytest.mark.parametrize(("state", "kind"), sorted(SAVE_TABLE))
def test_save_decision(state: str, kind: str) -> None:
    row, tomb = STATES[state]
    incoming, sync = SAVES[kind]
    decision = decide.decide_save(row=row, incoming=incoming, sync=sync, tombstone=lambda: tomb)
    assert decision.action is SAVE_TABLE[state, kind], decision
    assert decision.writes_row is (decision.action in (C, U))
    assert decision.write_tombstone is False


def test_the_table_covers_every_state_and_save() -> None:
    assert set(SAVE_TABLE) == {(state, kind) for state in STATES for kind in SAVES}


DELETES: dict[str, Mark] = {
    "DELETE of row": Mark(4, at(100)),
    "DELETE older than row": Mark(1, at(20)),
    "DELETE later": Mark(7, at(400)),
}

T, X = Action.TOMBSTONE, Action.DELETE

# (action, tombstone written)
DELETE_TABLE: dict[tuple[str, str], tuple[Action, bool]] = {
    ("absent", "DELETE of row"): (T, True),
    ("absent", "DELETE older than row"): (T, True),
    ("absent", "DELETE later"): (T, True),
    ("absent, deleted", "DELETE of row"): (D, True),  # the same delete again
    ("absent, deleted", "DELETE older than row"): (S, False),  # older than the tombstone
    ("absent, deleted", "DELETE later"): (T, True),
    ("absent, deleted long ago", "DELETE of row"): (T, True),
    ("absent, deleted long ago", "DELETE older than row"): (S, False),
    ("absent, deleted long ago", "DELETE later"): (T, True),
    ("row", "DELETE of row"): (X, True),
    ("row", "DELETE older than row"): (S, True),  # the row was re-created after it: kept
    ("row", "DELETE later"): (X, True),
    ("row, re-created after delete", "DELETE of row"): (S, True),
    ("row, re-created after delete", "DELETE older than row"): (S, False),
    ("row, re-created after delete", "DELETE later"): (X, True),
}


@pytest.mark.parametrize(("state", "kind"), sorted(DELETE_TABLE))
def test_delete_decision(state: str, kind: str) -> None:
    row, tomb = STATES[state]
    decision = decide.decide_delete(row=row, delete=DELETES[kind], tombstone=tomb)
    assert (decision.action, decision.write_tombstone) == DELETE_TABLE[state, kind], decision


def test_the_delete_table_covers_every_state() -> None:
    assert set(DELETE_TABLE) == {(state, kind) for state in STATES for kind in DELETES}


def test_the_tombstone_is_read_only_when_a_rule_needs_it() -> None:
    reads: list[int] = []

    def tombstone() -> Mark | None:
        reads.append(1)
        return TOMB

    decide.decide_save(row=ROW, incoming=Mark(4, at(110)), sync=False, tombstone=tombstone)
    decide.decide_save(row=ROW, incoming=Mark(3, at(100)), sync=True, tombstone=tombstone)
    assert reads == []
    decide.decide_save(row=None, incoming=Mark(4, at(110)), sync=False, tombstone=tombstone)
    decide.decide_save(row=ROW, incoming=Mark(5, at(90)), sync=False, tombstone=tombstone)
    assert len(reads) == 2


@pytest.mark.parametrize(
    ("verdict", "action"),
    [
        (Verdict.APPLY, U),
        (Verdict.APPLY_AFTER_GAP, U),
        (Verdict.DOWNGRADE, U),
        (Verdict.DUPLICATE, D),
        (Verdict.OUT_OF_ORDER, S),
    ],
)
def test_every_revision_verdict_has_one_action(verdict: Verdict, action: Action) -> None:
    cases = {
        Verdict.APPLY: (Mark(4, at(110)), False),
        Verdict.APPLY_AFTER_GAP: (Mark(9, at(110)), False),
        Verdict.DOWNGRADE: (Mark(1, at(110)), True),
        Verdict.DUPLICATE: (Mark(3, at(110)), False),
        Verdict.OUT_OF_ORDER: (Mark(1, at(110)), False),
    }
    incoming, sync = cases[verdict]
    decision = decide.decide_save(row=ROW, incoming=incoming, sync=sync, tombstone=lambda: None)
    assert (decision.verdict, decision.action) == (verdict, action)


def test_skip_reasons() -> None:
    assert Decision(S, Mark(1, None)).skip_reason == "stale"
    assert Decision(D, Mark(1, None)).skip_reason == "duplicate"
    assert {Decision(a, Mark(1, None)).skip_reason for a in (C, U, X, T)} == {None}


@pytest.mark.parametrize(
    ("decision", "words"),
    [
        (Decision(S, Mark(2, at(1)), None, TOMB, why=Why.DELETED_ROW), "for deleted row skipped"),
        (Decision(S, Mark(2, at(1)), ROW, TOMB, why=Why.PREVIOUS_LIFE), "re-created row skipped"),
        (Decision(S, Mark(2, at(1)), ROW, None, why=Why.ROW_NEWER), "row kept"),
        (
            Decision(D, Mark(3, at(1)), ROW, verdict=Verdict.DUPLICATE, why=Why.REVISION),
            "Received duplicate CQRS data",
        ),
    ],
)
def test_report_logs_in_django_cqrs_words(
    decision: Decision, words: str, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    counted: list[tuple[str, str]] = []
    monkeypatch.setattr(decide.metrics, "enabled", lambda: False)
    monkeypatch.setattr(decide.metrics, "replica_skipped", lambda *a: counted.append(a))
    with caplog.at_level(logging.DEBUG, "django-cqrs"):
        decide.report(decision, "item", 7, "default")
    assert words in caplog.text
    assert "pk = 7" in caplog.text
    assert counted == []  # metrics off: not even an on-commit callback


@pytest.mark.django_db(transaction=True)
def test_report_counts_a_skip_once_committed(monkeypatch: Any) -> None:
    from django.db import transaction

    counted: list[tuple[str, str]] = []
    monkeypatch.setattr(decide.metrics, "enabled", lambda: True)
    monkeypatch.setattr(decide.metrics, "replica_skipped", lambda *a: counted.append(a))
    duplicate = Decision(D, Mark(3, at(1)), ROW, verdict=Verdict.DUPLICATE, why=Why.REVISION)
    with transaction.atomic():
        decide.report(duplicate, "item", 1, "default")
        try:
            with transaction.atomic():  # a bulk batch that falls back: its skips never happened
                decide.report(Decision(S, Mark(1, at(1)), why=Why.ROW_NEWER), "item", 2, "default")
                raise RuntimeError
        except RuntimeError:
            pass
        decide.report(Decision(U, Mark(4, at(1)), ROW), "item", 3, "default")
        assert counted == []
    assert counted == [("item", "duplicate")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "one-by-one"])
def test_skips_are_counted_by_reason_on_both_paths(bulk: bool, settings: Any) -> None:
    """`cqrs_replica_messages_skipped_total` in a real registry, from a committed batch."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from replica_support import data, payload

    from cqrs_core.constants import SignalType
    from dj_cqrs.consumer import make_handler
    from dj_cqrs.observability import metrics

    settings.CQRS = {
        **settings.CQRS,
        "replica": {**settings.CQRS["replica"], "CQRS_BULK_APPLY": bulk},
    }

    def value(reason: str) -> float:
        labels = {"cqrs_id": "item", "reason": reason}
        sample = prometheus_client.REGISTRY.get_sample_value(
            "cqrs_replica_messages_skipped_total", labels
        )
        return sample or 0.0

    was = metrics.ON
    metrics.enable()
    try:
        stale, duplicate = value("stale"), value("duplicate")
        handler = make_handler()
        outcomes = handler(
            [
                payload("item", data(1, 2, 20, name="b")),
                payload("item", data(1, 2, 20, name="b")),  # duplicate
                payload("item", data(1, 1, 10, name="a")),  # out of order: stale
                payload("item", data(2, 0, 5, name="x")),
                payload("item", data(2, 1, 6), SignalType.DELETE),
                payload("item", data(2, 0, 5, name="x")),  # of the deleted row: stale
                payload("item", data(2, 1, 6), SignalType.DELETE),  # duplicate
            ]
        )
        assert {o.kind.value for o in outcomes} == {"applied"}
        assert value("stale") == stale + 2
        assert value("duplicate") == duplicate + 2
    finally:
        metrics.ON = was
