"""What the commands print, compared with django-cqrs 3.x's exact text, stream by stream.

Scripts parse the commands' output and pipes join 3.x and our services, so every 3.x line
(`Done!`, `N instance(s) synced.`, `Wrong CQRS ID: x!`, the pipe headers and JSON lists...) must
come out character for character on the stream 3.x used. Our own, extra lines go to stderr.
The expected texts below were taken from django-cqrs 3.1.0's commands.

Each row: command line, stdin, then what stdout must be (`{TS}` is a `str(datetime)` timestamp)
and the lines stderr must contain, or the first line of the CommandError.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from commands_fixtures import outbox_fixture  # noqa: F401 (fixture `outbox`)
from commands_support import published
from cqrs_replica_models import AuthorRef
from cqrs_testproject.master_app.models import Author
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from cqrs_core import codec

pytestmark = pytest.mark.django_db(transaction=True)

TS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\+00:00"
"""`str(timezone.now())`: 3.x's timestamp (a space, not ISO's `T`)."""

T0 = "2026-01-01 00:00:00+00:00"


@pytest.fixture
def rows(outbox: Path) -> None:
    """Masters 1, 2, 3 (revision 0); replicas 1 (same), 2 (revision 1) and 9 (gone on master)."""
    Author.objects.bulk_create([Author(id=i, name=f"a{i}") for i in (1, 2, 3)])
    now = timezone.now()
    AuthorRef.objects.bulk_create(
        [
            AuthorRef(id=i, name=f"a{i}", display="", cqrs_revision=revision, cqrs_updated=now)
            for i, revision in ((1, 0), (2, 1), (9, 0))
        ]
    )
    outbox.unlink(missing_ok=True)


def dump_text() -> str:
    """The dump file 3.x writes for the fixture rows: no line end after the last row."""
    lines = ["author"] + [codec.dumps(a.to_cqrs_dict()) for a in Author.objects.order_by("pk")]
    return "\n".join(lines)


CASES: list[tuple[str, list[str], str | None, str | None, list[str], str | None]] = [
    # id, argv, stdin, stdout pattern, stderr lines, CommandError first line
    ("sync-wrong-id", ["cqrs_sync", "--cqrs-id", "nope"], None, None, [], "Wrong CQRS ID: nope!"),
    (
        "sync-not-json",
        ["cqrs_sync", "-cid", "author", "-f", "x"],
        None,
        None,
        [],
        "Bad filter kwargs!",
    ),
    (
        "sync-not-object",
        ["cqrs_sync", "-cid", "author", "-f", "[1]"],
        None,
        None,
        [],
        "Bad filter kwargs!",
    ),
    (
        "sync-bad-field",
        ["cqrs_sync", "-cid", "author", "-f", '{"nope": 1}'],
        None,
        None,
        [],
        "Bad filter kwargs! Cannot resolve keyword 'nope' into field. Choices are: ",
    ),
    (
        "sync-nothing",
        ["cqrs_sync", "-cid", "author", "-f", '{"id__in": []}'],
        None,
        "No objects found for filter!\n",
        [],
        None,
    ),
    (
        "sync-all",
        ["cqrs_sync", "-cid", "author"],
        None,
        "Done!\n3 instance(s) synced.\n3 instance(s) processed.\n",
        [],
        None,
    ),
    (
        "sync-filter-progress",
        ["cqrs_sync", "-cid", "author", "-f", '{"id__gt": 1}', "-p", "-b", "7"],
        None,
        "Processing 2 records with batch size 7\n"
        "Done!\n2 instance(s) synced.\n2 instance(s) processed.\n",
        [],
        None,
    ),
    (
        "dump-stdout",
        ["cqrs_bulk_dump", "-c", "author", "-o", "-"],
        None,
        "{DUMP}",
        ["Done!", "3 instance(s) saved.", "3 instance(s) processed."],
        None,
    ),
    (
        "dump-wrong-id",
        ["cqrs_bulk_dump", "--cqrs-id", "nope"],
        None,
        None,
        [],
        "Wrong CQRS ID: nope!",
    ),
    (
        "dump-progress",
        ["cqrs_bulk_dump", "-c", "author", "-o", "-", "-p", "-b", "2"],
        None,
        "{DUMP}",
        ["Processing 3 records with batch size 2", "Done!"],
        None,
    ),
    (
        "load-stdin",
        ["cqrs_bulk_load", "-i", "-"],
        "{DUMP}",
        "",
        ["Done!", "3 instance(s) loaded."],
        None,
    ),
    ("load-empty", ["cqrs_bulk_load", "-i", "-"], "", None, [], "File - is empty!"),
    ("load-wrong-id", ["cqrs_bulk_load", "-i", "-"], "autor\n", None, [], "Wrong CQRS ID: autor!"),
    (
        "load-bad-line",
        ["cqrs_bulk_load", "-i", "-"],
        "author\n{nope\n",
        None,
        ["Dump file can't be parsed: line 2!", "Done!", "0 instance(s) loaded."],
        "1 row(s)",
    ),
    (
        "diff-master",
        ["cqrs_diff_master", "-cid", "author"],
        None,
        "author,{TS}\n[[1,0],[2,0],[3,0]]\n",
        [],
        None,
    ),
    (
        "diff-master-batches",
        ["cqrs_diff_master", "-cid", "author", "-b", "2"],
        None,
        "author,{TS}\n[[1,0],[2,0]]\n[[3,0]]\n",
        [],
        None,
    ),
    (
        "diff-master-none",
        ["cqrs_diff_master", "-cid", "author", "-f", '{"id": 0}'],
        None,
        "",
        ["No objects found for filter!"],
        None,
    ),
    (
        "diff-master-bad-filter",
        ["cqrs_diff_master", "-cid", "author", "-f", "1"],
        None,
        None,
        [],
        "Bad filter kwargs!",
    ),
    (
        "diff-replica",
        ["cqrs_diff_replica"],
        f"author,{T0}\n[[1,0],[2,0],[3,0]]\n",
        f"author,{T0},replica\n[2,3]\n",
        ["PK to resync: {2, 3}"],
        None,
    ),
    (
        "diff-replica-same",
        ["cqrs_diff_replica"],
        f"author,{T0}\n[[1,0]]\n",
        f"author,{T0},replica\n",
        [],
        None,
    ),
    (
        "diff-replica-wrong-id",
        ["cqrs_diff_replica"],
        f"nope,{T0}\n",
        None,
        [],
        "Wrong CQRS ID: nope!",
    ),
    ("diff-replica-empty", ["cqrs_diff_replica"], "", None, [], "Wrong CQRS ID: !"),
    (
        "diff-sync",
        ["cqrs_diff_sync"],
        f"author,{T0},None\n[2,3]\n[99]\n",
        "Done!\n2 instance(s) synced.\n2 instance(s) processed.\nNo objects found for filter!\n",
        [],
        None,
    ),
    (
        "diff-sync-progress",
        ["cqrs_diff_sync", "-p", "-b", "5"],
        f"author,{T0},None\n[1]\n",
        "Processing 1 records with batch size 5\n"
        "Done!\n1 instance(s) synced.\n1 instance(s) processed.\n",
        [],
        None,
    ),
    (
        "diff-sync-wrong-id",
        ["cqrs_diff_sync"],
        f"nope,{T0},None\n",
        None,
        [],
        "Wrong CQRS ID: nope!",
    ),
    (
        "deleted-replica",
        ["cqrs_deleted_diff_replica", "-cid", "author", "-b", "2"],
        None,
        "author,{TS}\n[1,2]\n[9]\n",
        [],
        None,
    ),
    (
        "deleted-replica-none",
        ["cqrs_deleted_diff_replica", "-cid", "author", "-f", '{"id": 5}'],
        None,
        "",
        ["No objects found for filter!"],
        None,
    ),
    (
        "deleted-replica-wrong-id",
        ["cqrs_deleted_diff_replica", "-cid", "nope"],
        None,
        None,
        [],
        "Wrong CQRS ID: nope!",
    ),
    (
        "deleted-master",
        ["cqrs_deleted_diff_master"],
        f"author,{T0}\n[1,2]\n[9]\n",
        f"author,{T0}\n[9]\n",
        ["PK to delete: [9]"],
        None,
    ),
    (
        "deleted-master-wrong-id",
        ["cqrs_deleted_diff_master"],
        f"nope,{T0}\n",
        None,
        [],
        "Wrong CQRS ID: nope!",
    ),
    ("deleted-sync", ["cqrs_deleted_sync_replica"], f"author,{T0}\n[9]\n", "", [], None),
    (
        "deleted-sync-wrong-id",
        ["cqrs_deleted_sync_replica"],
        f"nope,{T0}\n",
        None,
        [],
        "Wrong CQRS ID: nope!",
    ),
]


def _expand(text: str) -> str:
    return text.replace("{DUMP}", dump_text())


@pytest.mark.usefixtures("rows")
@pytest.mark.parametrize(
    ("argv", "stdin", "stdout", "stderr_lines", "error"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_output_is_3x_text(
    argv: list[str],
    stdin: str | None,
    stdout: str | None,
    stderr_lines: list[str],
    error: str | None,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    extra: dict[str, Any] = {"stdin": io.StringIO(_expand(stdin))} if stdin is not None else {}
    if error is not None:
        with pytest.raises(CommandError) as info:
            call_command(*argv, stdout=out, stderr=err, **extra)
        assert str(info.value).splitlines()[0].startswith(error), str(info.value)
    else:
        call_command(*argv, stdout=out, stderr=err, **extra)
    if stdout is not None:
        pattern = re.escape(_expand(stdout)).replace(re.escape("{TS}"), TS)
        assert re.fullmatch(pattern, out.getvalue()), out.getvalue()
    lines = err.getvalue().splitlines()
    for line in stderr_lines:
        assert line in lines, err.getvalue()


def test_diff_sync_sends_to_the_queue_the_replica_appended(rows: None, outbox: Path) -> None:
    """3.x: the last field of line 1 is the queue; `None` means every replica."""
    call_command(
        "cqrs_diff_sync", stdin=io.StringIO(f"author,{T0},billing\n[1]\n"), stdout=io.StringIO()
    )
    call_command(
        "cqrs_diff_sync", stdin=io.StringIO(f"author,{T0},None\n[2]\n"), stdout=io.StringIO()
    )
    assert [(key, p.instance_pk) for key, p in published(outbox)] == [
        ("cqrs.billing.author", 1),
        ("author", 2),
    ]


def test_deleted_sync_removes_the_rows(rows: None) -> None:
    out = io.StringIO()
    call_command("cqrs_deleted_sync_replica", stdin=io.StringIO(f"author,{T0}\n[9]\n"), stdout=out)
    assert out.getvalue() == ""
    assert sorted(AuthorRef.objects.values_list("pk", flat=True)) == [1, 2]


def test_a_failed_row_is_reported_on_stdout_as_3x(rows: None, monkeypatch) -> None:
    original = Author.to_cqrs_dict

    def to_cqrs_dict(self: Author, *args: Any, **kwargs: Any) -> Any:
        if self.pk == 2:
            raise ValueError("broken")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Author, "to_cqrs_dict", to_cqrs_dict)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="could not be synced"):
        call_command("cqrs_sync", "-cid", "author", stdout=out, stderr=err)
    assert out.getvalue() == (
        "\nSync record failed for pk=2: ValueError: broken\n"
        "Done!\n2 instance(s) synced.\n3 instance(s) processed.\n"
    )
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="could not be serialized"):
        call_command("cqrs_bulk_dump", "-c", "author", "-o", "-", stdout=out, stderr=err)
    assert "\nDump record failed for pk=2: ValueError: broken\n" in err.getvalue()
    assert err.getvalue().endswith("Done!\n2 instance(s) saved.\n3 instance(s) processed.\n")


def test_dump_file_name_and_exists_message(rows: None, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    call_command("cqrs_bulk_dump", "-c", "author", stderr=io.StringIO())
    assert (tmp_path / "author.dump").read_text() == dump_text()
    with pytest.raises(CommandError) as info:
        call_command("cqrs_bulk_dump", "-c", "author", stderr=io.StringIO())
    assert str(info.value).splitlines()[0] == "File author.dump exists!"
