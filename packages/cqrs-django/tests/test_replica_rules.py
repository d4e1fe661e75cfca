"""The pure apply rules: revision verdicts and the tombstone test (no database)."""

from __future__ import annotations

import pytest
from replica_support import at

from dj_cqrs.replica.rules import (
    Mark,
    Verdict,
    delete_is_stale,
    older_than_tombstone,
    row_is_newer_life,
    save_verdict,
)


@pytest.mark.parametrize(
    ("stored", "incoming", "sync", "verdict"),
    [
        (3, 4, False, Verdict.APPLY),
        (3, 3, False, Verdict.DUPLICATE),
        (3, 2, False, Verdict.OUT_OF_ORDER),
        (3, 7, False, Verdict.APPLY_AFTER_GAP),
        (3, 2, True, Verdict.DOWNGRADE),
        (3, 3, True, Verdict.APPLY),
        (3, 9, True, Verdict.APPLY),
    ],
)
def test_save_verdict(stored: int, incoming: int, sync: bool, verdict: Verdict) -> None:
    assert save_verdict(stored=stored, incoming=incoming, sync=sync) is verdict


def test_only_apply_verdicts_apply() -> None:
    assert {v for v in Verdict if v.applies} == {
        Verdict.APPLY,
        Verdict.APPLY_AFTER_GAP,
        Verdict.DOWNGRADE,
    }


tomb = Mark(revision=3, updated=at(100))


@pytest.mark.parametrize(
    ("event", "stale"),
    [
        (Mark(2, at(90)), True),  # the last save of the deleted row
        (Mark(0, at(10)), True),  # its creation, arriving late
        (Mark(2, at(100)), True),  # same instant as the delete: still the old row
        (Mark(0, at(101)), False),  # re-created after the delete
        (Mark(3, at(90)), False),  # a revision the delete did not know about
        (Mark(None, at(90)), True),  # unknown revision: time decides
        (Mark(2, None), True),  # unknown time: revision decides
    ],
)
def test_older_than_tombstone(event: Mark, stale: bool) -> None:
    assert older_than_tombstone(event, tomb) is stale


def test_an_empty_tombstone_blocks_nothing() -> None:
    assert older_than_tombstone(Mark(0, at(0)), Mark(None, None)) is False


def test_delete_is_stale_only_for_newer_rows() -> None:
    assert delete_is_stale(row_updated=at(101), delete=Mark(3, at(100))) is True
    assert delete_is_stale(row_updated=at(100), delete=Mark(3, at(100))) is False
    assert delete_is_stale(row_updated=at(50), delete=Mark(3, at(100))) is False
    assert delete_is_stale(row_updated=at(50), delete=Mark(3, None)) is False


def test_row_is_newer_life() -> None:
    assert row_is_newer_life(row_updated=at(150), tombstone=tomb) is True
    assert row_is_newer_life(row_updated=at(100), tombstone=tomb) is False
