"""Keyset batching under concurrent changes, progress display, argument parsing."""

from __future__ import annotations

import io

import pytest
from cqrs_testproject.master_app.models import Author
from django.core.management.base import CommandError

from dj_cqrs.management._batching import chunks, existing_pks, instance_batches, value_batches
from dj_cqrs.management._filters import parse_filter
from dj_cqrs.management._pipes import DiffHeader
from dj_cqrs.management._progress import Progress, format_duration


@pytest.mark.django_db(transaction=True)
def test_keyset_batches_see_every_stable_row_once_while_the_table_changes():
    Author.objects.bulk_create([Author(name=f"n{i}") for i in range(100)])
    initial = list(Author.objects.order_by("pk").values_list("pk", flat=True))
    seen: list[int] = []
    deleted: set[int] = set()
    for number, batch in enumerate(instance_batches(Author.objects.all(), 10)):
        seen.extend(a.pk for a in batch)
        if number == 1:
            # Rows before the cursor disappear (OFFSET would now skip 3 unseen rows) ...
            gone = initial[:3] + [initial[60]]
            Author.objects.filter(pk__in=gone).delete()
            deleted.update(gone)
            # ... and rows are added (OFFSET would repeat rows if they sorted before the cursor).
            Author.objects.bulk_create([Author(name="late") for _ in range(5)])
    stable = [pk for pk in initial if pk not in deleted]
    assert len(seen) == len(set(seen))  # nothing repeated
    assert set(stable) <= set(seen)  # nothing skipped
    assert initial[60] not in seen
    assert seen == sorted(seen)


@pytest.mark.django_db
def test_value_batches_and_filters_keep_pk_order():
    Author.objects.bulk_create([Author(name=f"n{i % 3}") for i in range(25)])
    batches = list(value_batches(Author.objects.filter(name="n1"), ["name"], 4))
    assert [len(b) for b in batches] == [4, 4]
    flat = [row for b in batches for row in b]
    assert [row[0] for row in flat] == sorted(
        Author.objects.filter(name="n1").values_list("pk", flat=True)
    )
    assert existing_pks(Author.objects.all(), [flat[0][0], 10**9]) == {flat[0][0]}
    with pytest.raises(ValueError, match="sliced"):
        list(instance_batches(Author.objects.all()[:3], 2))


def test_chunks():
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_plain_lines_with_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, 1000, label="author: synced", tty=False, interval=5, clock=clock)
    clock.now += 2
    progress.advance(200)  # under the interval: nothing printed yet
    assert out.getvalue() == ""
    clock.now += 3
    progress.advance(300, failed=2)
    assert out.getvalue() == "author: synced 500/1000 (50.0%), 100.0/s, ETA 0:00:05, 2 failed\n"
    clock.now += 5
    progress.advance(500)
    progress.finish()
    last = out.getvalue().splitlines()[-1]
    assert last == "author: synced 1000/1000 (100.0%), 100.0/s, in 0:00:10, 2 failed"
    assert "\r" not in out.getvalue()


def test_progress_redraws_a_bar_on_a_terminal():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, 40, label="x", tty=True, clock=clock)
    clock.now += 1
    progress.advance(10)
    assert (
        out.getvalue()
        == "\r\x1b[2K[#######.......................] x 10/40 (25.0%), 10.0/s, ETA 0:00:03"
    )
    progress.note("row 5 failed")
    assert out.getvalue().endswith("\r\x1b[2Krow 5 failed\n")
    clock.now += 3
    progress.advance(30)
    progress.finish()
    assert out.getvalue().endswith("[" + "#" * 30 + "] x 40/40 (100.0%), 10.0/s, in 0:00:04\n")


def test_progress_disabled_still_counts_and_notes():
    out = io.StringIO()
    progress = Progress(out, None, label="x", enabled=False, tty=False, interval=0)
    progress.advance(3, failed=1)
    progress.note("bad row")
    progress.finish()
    assert out.getvalue() == "bad row\n"
    assert (progress.done, progress.failed) == (3, 1)


def test_progress_without_total_has_no_eta():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, None, label="x", tty=False, interval=0, clock=clock)
    clock.now += 2
    progress.advance(10)
    assert out.getvalue() == "x 10, 5.0/s\n"


def test_format_duration():
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(-1) == "0:00:00"


def test_parse_filter():
    assert parse_filter(None) == {}
    assert parse_filter("  ") == {}
    assert parse_filter('{"id__in": [1, 2]}') == {"id__in": [1, 2]}
    with pytest.raises(CommandError, match="not valid JSON"):
        parse_filter("{'id': 1}")
    with pytest.raises(CommandError, match="must be a JSON object"):
        parse_filter("3")


def test_diff_header():
    header = DiffHeader("author,2026-01-01T00:00:00+00:00,billing")
    assert (header.cqrs_id, header.timestamp, header.queue) == (
        "author",
        "2026-01-01T00:00:00+00:00",
        "billing",
    )
    assert DiffHeader("author,2026").queue is None
    assert DiffHeader("author").cqrs_id == "author"
    with pytest.raises(CommandError):
        DiffHeader(",2026")
