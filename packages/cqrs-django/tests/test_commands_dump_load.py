"""`cqrs_bulk_dump` on the master and `cqrs_bulk_load` on the replica, file and pipe."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from commands_fixtures import outbox_fixture  # noqa: F401 (fixture `outbox`)
from commands_support import manage, manage_env, pipeline
from cqrs_replica_models import AuthorRef, ProductRef
from cqrs_testproject.master_app.models import Author, Product
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)


def make_authors(count: int) -> None:
    Author.objects.bulk_create(
        [Author(name=f"author {i}", email=f"a{i}@example.com") for i in range(count)],
        batch_size=2000,
    )


def master_rows() -> dict[int, tuple[Any, ...]]:
    return {a.pk: (a.name, a.email, a.birth_date, a.cqrs_revision) for a in Author.objects.all()}


def replica_rows() -> dict[int, tuple[Any, ...]]:
    return {a.pk: (a.name, a.email, a.birth_date, a.cqrs_revision) for a in AuthorRef.objects.all()}


def run(*args: str, **kwargs: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_dump_format_and_load_round_trip(outbox, tmp_path: Path):
    make_authors(6000)  # several dump and load batches; the replica applies row by row
    first_ten = list(Author.objects.order_by("pk").values_list("pk", flat=True)[:10])
    Author.objects.filter(pk__in=first_ten).update(cqrs_revision=4)  # MySQL: no LIMIT in IN
    dump = tmp_path / "author.dump"
    out, err = run("cqrs_bulk_dump", "--cqrs-id", "author", "-o", str(dump), "-b", "1000")
    assert (out, err) == ("", "Done!\n6000 instance(s) saved.\n6000 instance(s) processed.\n")

    lines = dump.read_text().splitlines()
    assert lines[0] == "author"
    rows = [json.loads(line) for line in lines[1:]]
    assert [row["id"] for row in rows] == sorted(master_rows())  # every row once, pk order
    first = Author.objects.order_by("pk").first()
    assert rows[0] == json.loads(json.dumps(first.to_cqrs_dict()))

    out, err = run("cqrs_bulk_load", "-i", str(dump), "-b", "1500")
    assert (out, err) == ("", "Done!\n6000 instance(s) loaded.\n")
    assert replica_rows() == master_rows()


def test_dump_refuses_to_overwrite_without_force(outbox, tmp_path: Path):
    make_authors(3)
    dump = tmp_path / "author.dump"
    dump.write_text("keep me")
    with pytest.raises(CommandError, match="^File .*author.dump exists!\nGive --force"):
        run("cqrs_bulk_dump", "--cqrs-id", "author", "-o", str(dump))
    assert dump.read_text() == "keep me"
    run("cqrs_bulk_dump", "--cqrs-id", "author", "-o", str(dump), "--force")
    assert dump.read_text().splitlines()[0] == "author"
    assert len(dump.read_text().splitlines()) == 4


def test_default_output_name_is_cqrs_id_dot_dump(outbox, tmp_path: Path, monkeypatch):
    make_authors(2)
    monkeypatch.chdir(tmp_path)
    run("cqrs_bulk_dump", "--cqrs-id", "author")
    assert (tmp_path / "author.dump").read_text().startswith("author\n")
    assert not list(tmp_path.glob("*.partial"))


def test_dump_to_stdout_with_progress(outbox):
    make_authors(25)
    out, err = run("cqrs_bulk_dump", "--cqrs-id", "author", "-o", "-", "-b", "10", "--progress")
    lines = out.splitlines()
    assert lines[0] == "author" and len(lines) == 26
    assert "author: dumped 25/25 (100.0%)" in err


def test_product_types_survive_the_round_trip(outbox, tmp_path: Path):
    import datetime
    import decimal

    Product.objects.create(
        name="Widget/1",
        quantity=3,
        price=decimal.Decimal("12.34"),
        release_date=datetime.date(2026, 5, 1),
        published_at=datetime.datetime(2026, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
        note=None,
    )
    dump = tmp_path / "product.dump"
    run("cqrs_bulk_dump", "--cqrs-id", "product", "-o", str(dump))
    run("cqrs_bulk_load", "-i", str(dump))
    master = Product.objects.get()
    replica = ProductRef.objects.get()
    assert (replica.title, replica.stock, replica.price, replica.release_date) == (
        master.name,
        master.quantity,
        master.price,
        master.release_date,
    )
    assert (replica.published_at, replica.external_uuid) == (
        master.published_at,
        master.external_uuid,
    )


def replica(pk: int, name: str, revision: int = 0) -> AuthorRef:
    return AuthorRef(
        id=pk, name=name, display=name, cqrs_revision=revision, cqrs_updated=timezone.now()
    )


def write_dump(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def row(pk: int, name: str, revision: int = 0) -> str:
    return json.dumps(
        {
            "id": pk,
            "name": name,
            "email": "",
            "birth_date": None,
            "cqrs_revision": revision,
            "cqrs_updated": str(timezone.now()),
        }
    )


def test_clear_only_when_given(outbox, tmp_path: Path):
    dump = write_dump(tmp_path / "a.dump", "author", row(1, "one"))
    AuthorRef.objects.bulk_create([replica(7, "stale")])
    run("cqrs_bulk_load", "-i", str(dump))
    assert sorted(AuthorRef.objects.values_list("pk", flat=True)) == [1, 7]
    run("cqrs_bulk_load", "-i", str(dump), "--clear=false")  # upstream cleared here
    assert sorted(AuthorRef.objects.values_list("pk", flat=True)) == [1, 7]
    _, err = run("cqrs_bulk_load", "-i", str(dump), "--clear")
    assert sorted(AuthorRef.objects.values_list("pk", flat=True)) == [1]
    assert "2 replica row(s) deleted (--clear)" in err
    with pytest.raises(CommandError, match="--clear takes no value, or one of true/false"):
        run("cqrs_bulk_load", "-i", str(dump), "--clear=maybe")


def test_a_failing_row_is_reported_and_the_load_goes_on(outbox, tmp_path: Path):
    dump = write_dump(
        tmp_path / "a.dump",
        "author",
        row(1, "one"),
        json.dumps({"id": 2, "cqrs_revision": 0, "cqrs_updated": str(timezone.now())}),  # no name
        row(3, "three"),
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 row\\(s\\) of 'author' failed to load"):
        call_command("cqrs_bulk_load", "-i", str(dump), stdout=io.StringIO(), stderr=err)
    assert "Unexpected error: line 3! " in err.getvalue()
    assert sorted(AuthorRef.objects.values_list("pk", flat=True)) == [1, 3]


def test_an_unreadable_line_is_reported_with_its_line_number(outbox, tmp_path: Path):
    dump = write_dump(
        tmp_path / "a.dump",
        "author",
        row(1, "one"),
        row(2, "two"),
        '{"id": 3, "name": tru',
        row(4, "x"),
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="^1 row\\(s\\) of 'author' failed to load"):
        call_command("cqrs_bulk_load", "-i", str(dump), "-b", "2", stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == "Dump file can't be parsed: line 4!\nDone!\n3 instance(s) loaded.\n"
    assert sorted(AuthorRef.objects.values_list("pk", flat=True)) == [1, 2, 4]  # as 3.x


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "File .*bad.dump is empty!\nThe input is empty: expected the CQRS_ID on line 1"),
        ("autor\n", "Wrong CQRS ID: autor!\nUnknown replica CQRS_ID 'autor'. Did you mean"),
        ("author\n[1, 2]\n", "1 row\\(s\\) of 'author' failed to load"),
    ],
)
def test_bad_dump_files(outbox, tmp_path: Path, content: str, message: str):
    dump = tmp_path / "bad.dump"
    dump.write_text(content)
    with pytest.raises(CommandError, match=message):
        run("cqrs_bulk_load", "-i", str(dump), "--clear")


def test_missing_input_file(outbox, tmp_path: Path):
    with pytest.raises(CommandError, match="^File .*nothing.dump doesn't exist!"):
        run("cqrs_bulk_load", "-i", str(tmp_path / "nothing.dump"))


def test_load_from_stdin_through_a_pipe(outbox):
    """`cqrs_bulk_dump -o - | cqrs_bulk_load -i -` as two processes."""
    make_authors(2000)
    env = manage_env()
    codes, out, errs = pipeline(
        [
            manage("cqrs_bulk_dump", "--cqrs-id", "author", "-o", "-", "-b", "300"),
            manage("cqrs_bulk_load", "-i", "-", "-b", "450"),
        ],
        env,
        timeout=300,  # a hang guard only: a busy CI machine is slow to start two Djangos
    )
    assert codes == [0, 0], errs
    assert out == b""
    assert errs[1] == "Done!\n2000 instance(s) loaded.\n"
    assert replica_rows() == master_rows()


def test_cli_exit_code_for_unknown_cqrs_id(outbox):
    result = subprocess.run(
        manage("cqrs_bulk_dump", "--cqrs-id", "nope", "-o", "-"),
        env=manage_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "CommandError: Wrong CQRS ID: nope!\nUnknown master CQRS_ID 'nope'" in result.stderr
