"""The diff pipelines, as real processes joined by pipes and through `call_command`.

cqrs_diff_master | cqrs_diff_replica | cqrs_diff_sync
cqrs_deleted_diff_replica | cqrs_deleted_diff_master | cqrs_deleted_sync_replica
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from commands_fixtures import outbox_fixture  # noqa: F401 (fixture `outbox`)
from commands_support import TRANSPORT, manage, manage_env, pipeline, published
from cqrs_replica_models import AuthorRef, VoucherRef
from cqrs_testproject.master_app.models import Author, Voucher
from django.core.management import call_command
from django.core.management.base import CommandError

from dj_cqrs.consumer import make_handler
from dj_cqrs.models import Tombstone

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 20000


def run(*args: str, stdin: str | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    extra = {"stdin": io.StringIO(stdin)} if stdin is not None else {}
    call_command(*args, stdout=out, stderr=err, **extra)
    return out.getvalue(), err.getvalue()


def master_rows() -> dict[int, tuple[Any, ...]]:
    return {a.pk: (a.name, a.email, a.cqrs_revision) for a in Author.objects.all()}


def replica_rows() -> dict[int, tuple[Any, ...]]:
    return {a.pk: (a.name, a.email, a.cqrs_revision) for a in AuthorRef.objects.all()}


@pytest.fixture
def drifted() -> dict[str, list[int]]:
    """ROWS master authors, a replica copy, then drift: missing, stale and extra replica rows."""
    Author.objects.bulk_create(
        [Author(name=f"author {i}", email=f"a{i}@example.com") for i in range(ROWS)],
        batch_size=2000,
    )
    masters = list(Author.objects.order_by("pk"))
    AuthorRef.objects.bulk_create(
        [
            AuthorRef(
                id=a.pk,
                name=a.name,
                email=a.email,
                display=a.name,
                cqrs_revision=a.cqrs_revision,
                cqrs_updated=a.cqrs_updated,
            )
            for a in masters
        ],
        batch_size=2000,
    )
    pks = [a.pk for a in masters]
    missing = pks[5:ROWS:577]  # spread over every batch
    stale = pks[11:ROWS:733]
    AuthorRef.objects.filter(pk__in=missing).delete()
    AuthorRef.objects.filter(pk__in=stale).update(cqrs_revision=7, name="stale")
    gone = [pks[-1] + 100 + i for i in range(0, 60, 3)]  # deleted on the master
    AuthorRef.objects.bulk_create(
        [
            AuthorRef(
                id=pk,
                name="gone",
                display="gone",
                cqrs_revision=0,
                cqrs_updated=masters[0].cqrs_updated,
            )
            for pk in gone
        ]
    )
    gone.append(pks[-7])
    Author.objects.filter(pk=pks[-7]).delete()  # gone on the master, still on the replica
    return {"missing": missing, "stale": stale, "gone": gone}


def lines_after_header(out: str) -> list[Any]:
    return [json.loads(line) for line in out.splitlines()[1:] if line.strip()]


def test_diff_pipeline_as_processes(outbox: Path, drifted, tmp_path: Path):
    sent_file = tmp_path / "sync.jsonl"
    env = manage_env(CQRS_TEST_TRANSPORT=TRANSPORT, CQRS_TEST_URL=f"file://{sent_file}")
    codes, out, errs = pipeline(
        [
            manage("cqrs_diff_master", "--cqrs-id", "author", "-b", "3000"),
            manage("cqrs_diff_replica"),
            manage("cqrs_diff_sync", "-b", "10"),
        ],
        env,
    )
    assert codes == [0, 0, 0], errs
    expected = sorted(drifted["missing"] + drifted["stale"])
    assert f"{len(expected)} of {ROWS - 1} row(s) differ" in errs[1]
    # the replica appended its CQRS['queue'] to line 1: the SYNCs go to that replica only
    assert f"author: {len(expected)} SYNC(s) sent to queue 'replica'." in errs[2]
    synced = [int(line.split()[0]) for line in out.decode().splitlines() if "synced" in line]
    assert sum(synced) == len(expected)

    sent = published(sent_file)
    assert sorted(payload.instance_pk for _, payload in sent) == expected
    assert {key for key, _ in sent} == {"cqrs.replica.author"}
    outcomes = make_handler(["author"])([payload for _, payload in sent])
    assert all(o.kind.value == "applied" for o in outcomes), outcomes

    for pk in drifted["gone"]:
        assert pk in replica_rows()
    codes, out, errs = pipeline(
        [manage("cqrs_diff_master", "--cqrs-id", "author"), manage("cqrs_diff_replica")], env
    )
    assert codes == [0, 0], errs
    assert lines_after_header(out.decode()) == []  # nothing differs any more


def test_deleted_pipeline_as_processes(outbox: Path, drifted):
    env = manage_env()
    codes, out, errs = pipeline(
        [
            manage("cqrs_deleted_diff_replica", "--cqrs-id", "author", "-b", "2500"),
            manage("cqrs_deleted_diff_master"),
            manage("cqrs_deleted_sync_replica"),
        ],
        env,
    )
    assert codes == [0, 0, 0], errs
    assert out == b""  # as 3.x
    assert f"author: {len(drifted['gone'])} replica row(s) deleted." in errs[2]
    remaining = set(AuthorRef.objects.values_list("pk", flat=True))
    assert not remaining & set(drifted["gone"])
    assert remaining == set(Author.objects.values_list("pk", flat=True)) - set(drifted["missing"])
    tombstones = set(
        Tombstone.objects.filter(cqrs_id="author").values_list("instance_pk", flat=True)
    )
    assert tombstones == {str(pk) for pk in drifted["gone"]}


def test_diff_stages_in_process_and_directed_queue(settings, outbox: Path, drifted):
    master_out, _ = run("cqrs_diff_master", "--cqrs-id", "author", "-b", "5000")
    header = master_out.splitlines()[0]
    cqrs_id, timestamp = header.split(",")
    assert cqrs_id == "author"
    assert timestamp.startswith("20")
    batches = lines_after_header(master_out)
    assert [len(b) for b in batches] == [5000, 5000, 5000, 4999]
    pairs = [pair for b in batches for pair in b]
    assert [pk for pk, _ in pairs] == sorted(Author.objects.values_list("pk", flat=True))
    assert {rev for _, rev in pairs} == {0}

    settings.CQRS = {**settings.CQRS, "queue": "billing"}  # the replica service's queue
    replica_out, _ = run("cqrs_diff_replica", stdin=master_out)
    assert replica_out.splitlines()[0] == header + ",billing"
    resync = sorted(pk for line in lines_after_header(replica_out) for pk in line)
    assert resync == sorted(drifted["missing"] + drifted["stale"])

    outbox.unlink()  # the DELETE of the fixture
    sync_out, err = run("cqrs_diff_sync", "--progress", stdin=replica_out)
    sent = published(outbox)
    assert sorted(p.instance_pk for _, p in sent) == resync
    assert {key for key, _ in sent} == {"cqrs.billing.author"}
    assert "to queue 'billing'" in err
    assert sync_out.count("Done!\n") == len(lines_after_header(replica_out))
    assert f"author: synced {len(resync)}, " in err


def test_diff_sync_reports_rows_gone_from_the_master(outbox: Path):
    a, b = Author.objects.bulk_create([Author(name="a"), Author(name="b")])
    out, err = run(
        "cqrs_diff_sync", stdin=f"author,2026-01-01T00:00:00+00:00\n[{a.pk}, 999999]\n[{b.pk}]\n"
    )
    assert out == "Done!\n1 instance(s) synced.\n1 instance(s) processed.\n" * 2
    assert "2 SYNC(s) sent" in err
    assert "1 listed row(s) no longer exist on the master" in err


def test_uuid_keys_through_both_pipelines(outbox: Path):
    import uuid

    vouchers = Voucher.objects.bulk_create([Voucher(code=f"V{i}", value=i) for i in range(30)])
    for v in vouchers[:20]:
        VoucherRef.objects.create(
            id=v.id, code=v.code, value=v.value, cqrs_revision=0, cqrs_updated=v.cqrs_updated
        )
    ghost = uuid.uuid4()
    VoucherRef.objects.create(
        id=ghost, code="ghost", cqrs_revision=0, cqrs_updated=vouchers[0].cqrs_updated
    )

    master_out, _ = run("cqrs_diff_master", "--cqrs-id", "voucher", "-b", "7")
    replica_out, _ = run("cqrs_diff_replica", stdin=master_out)
    resync = {pk for line in lines_after_header(replica_out) for pk in line}
    assert resync == {str(v.id) for v in vouchers[20:]}
    run("cqrs_diff_sync", stdin=replica_out)
    assert {p.instance_pk for _, p in published(outbox)} == resync

    replica_list, _ = run("cqrs_deleted_diff_replica", "--cqrs-id", "voucher", "-b", "4")
    gone_out, _ = run("cqrs_deleted_diff_master", stdin=replica_list)
    assert lines_after_header(gone_out) == [[str(ghost)]]
    run("cqrs_deleted_sync_replica", stdin=gone_out)
    assert not VoucherRef.objects.filter(id=ghost).exists()
    assert VoucherRef.objects.count() == 20


def test_deleted_diff_replica_filter(outbox: Path):
    from django.utils import timezone

    now = timezone.now()
    AuthorRef.objects.bulk_create(
        [
            AuthorRef(id=i, name=f"n{i}", display="", cqrs_revision=0, cqrs_updated=now)
            for i in range(1, 11)
        ]
    )
    out, _ = run(
        "cqrs_deleted_diff_replica", "--cqrs-id", "author", "-f", '{"id__gt": 6}', "-b", "3"
    )
    assert out.splitlines()[0].split(",")[0] == "author"
    assert lines_after_header(out) == [[7, 8, 9], [10]]


@pytest.mark.parametrize(
    ("command", "stdin", "message"),
    [
        ("cqrs_diff_replica", "", "The input is empty"),
        ("cqrs_diff_replica", "nope,2026\n", "Unknown replica CQRS_ID 'nope'"),
        ("cqrs_diff_replica", "raw_event,2026\n", "is not a Django model"),
        (
            "cqrs_diff_replica",
            "author,2026\n[[1, 0]]\n[1, 2]\n",
            "Line 3 must be a JSON list of \\[pk, cqrs_revision\\] pairs",
        ),
        ("cqrs_diff_replica", "author,2026\n[[1, 0]\n", "Line 2 is not valid JSON"),
        (
            "cqrs_diff_replica",
            'author,2026\n[["x", 0]]\n',
            "Line 2: 'x' is not a valid primary key of AuthorRef",
        ),
        ("cqrs_diff_sync", "author,2026\n{}\n", "Line 2 must be a JSON list of primary keys"),
        ("cqrs_diff_sync", ",2026\n", "Wrong CQRS ID: !\nLine 1 must be 'CQRS_ID,timestamp"),
        (
            "cqrs_diff_sync",
            "autor,2026\n",
            "Unknown master CQRS_ID 'autor'. Did you mean 'author'?",
        ),
        (
            "cqrs_deleted_diff_master",
            "author\n[1, [2]]\n",
            "Line 2 must be a JSON list of primary keys",
        ),
        ("cqrs_deleted_sync_replica", "author\nnot json\n", "Line 2 is not valid JSON"),
    ],
)
def test_bad_pipe_input(outbox: Path, command: str, stdin: str, message: str):
    with pytest.raises(CommandError, match=message):
        run(command, stdin=stdin)
    assert published(outbox) == []


def test_bad_stage_in_a_real_pipe_fails_the_pipeline(outbox: Path):
    codes, _, errs = pipeline(
        [
            manage("cqrs_diff_master", "--cqrs-id", "nope"),
            manage("cqrs_diff_replica"),
            manage("cqrs_diff_sync"),
        ],
        manage_env(),
    )
    assert codes == [1, 1, 1]
    assert "CommandError: Wrong CQRS ID: nope!\nUnknown master CQRS_ID 'nope'" in errs[0]
    assert "CommandError: Wrong CQRS ID: !\nThe input is empty" in errs[1]
