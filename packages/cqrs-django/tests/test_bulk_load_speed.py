"""`cqrs_bulk_load` goes through the consumer's bulk apply: a few statements per batch, not per row.

3.x-compatible output is covered by test_commands_dump_load.py and test_commands_compat.py;
here: the cost (counted in queries, never timed), the same final state as row-by-row loading,
a failing row inside a bulk batch, and `--progress`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from cqrs_testproject.replica_app.models import Item, MappedItem
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)


def write_dump(path: Path, cqrs_id: str, rows: list[Any]) -> Path:
    lines = [cqrs_id] + [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def item(pk: int, name: str, revision: int = 0) -> dict[str, Any]:
    return {"id": pk, "name": name, "cqrs_revision": revision, "cqrs_updated": str(timezone.now())}


def load(*args: str) -> str:
    err = io.StringIO()
    call_command("cqrs_bulk_load", *args, stdout=io.StringIO(), stderr=err)
    return err.getvalue()


def test_a_batch_costs_a_few_statements_not_a_few_per_row(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "item.dump", "item", [item(i, f"n{i}") for i in range(3000)])
    with CaptureQueriesContext(connection) as queries:
        err = load("-i", str(dump), "-b", "1000")
    assert err == "Done!\n3000 instance(s) loaded.\n"
    # Row by row costs 3-5 statements per row (12,000+ here); the bulk path about 10 per batch.
    assert len(queries) < 100, f"{len(queries)} statements for 3 batches"
    assert Item.objects.count() == 3000
    assert Item.objects.get(pk=2999).name == "n2999"


def test_same_final_state_as_sync_events_row_by_row(tmp_path: Path) -> None:
    Item.objects.create(id=1, name="newer", cqrs_revision=5, cqrs_updated=timezone.now())
    Item.objects.create(id=2, name="older", cqrs_revision=1, cqrs_updated=timezone.now())
    rows = [item(1, "dumped-1", 3), item(2, "dumped-2", 2), item(3, "new"), item(3, "twice", 1)]
    err = load("-i", str(write_dump(tmp_path / "item.dump", "item", rows)))
    assert err == "Done!\n4 instance(s) loaded.\n"
    # A SYNC is applied even below the stored revision (3.x: a revision downgrade on sync).
    got = {i.pk: (i.name, i.cqrs_revision) for i in Item.objects.all()}
    assert got == {1: ("dumped-1", 3), 2: ("dumped-2", 2), 3: ("twice", 1)}


def test_mapping_applies_on_the_bulk_path(tmp_path: Path) -> None:
    row = {"id": 7, "name": "mapped", "quantity": 4, "cqrs_revision": 0}
    row["cqrs_updated"] = str(timezone.now())
    with CaptureQueriesContext(connection) as queries:
        err = load("-i", str(write_dump(tmp_path / "m.dump", "mapped_item", [row])))
    assert err == "Done!\n1 instance(s) loaded.\n"
    assert len(queries) < 20
    assert MappedItem.objects.values_list("id", "label", "qty", "extra").get() == (
        7,
        "mapped",
        4,
        "kept",
    )


def test_a_failing_row_in_a_bulk_batch_is_reported_and_the_others_load(tmp_path: Path) -> None:
    bad = {"id": 2, "cqrs_revision": 0, "cqrs_updated": str(timezone.now())}  # no name
    rows = [item(1, "one"), bad, "{not json", item(4, "four")]
    err = io.StringIO()
    with pytest.raises(CommandError, match="2 row\\(s\\) of 'item' failed to load"):
        call_command(
            "cqrs_bulk_load", "-i", str(write_dump(tmp_path / "i.dump", "item", rows)), stderr=err
        )
    assert err.getvalue() == (
        "Instance can't be saved: line 3!\nDump file can't be parsed: line 4!\n"
        "Done!\n2 instance(s) loaded.\n"
    )
    assert sorted(Item.objects.values_list("pk", flat=True)) == [1, 4]


def test_progress_counts_the_rows_of_the_file(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "item.dump", "item", [item(i, "x") for i in range(50)])
    err = load("-i", str(dump), "-b", "20", "--progress")
    lines = err.splitlines()
    assert lines[-2:] == ["Done!", "50 instance(s) loaded."]
    assert lines[-3].startswith("item: loaded 50/50 (100.0%), "), lines
