"""`cqrs_sync` end to end: every row (or the filtered ones) reaches the replicas, in batches."""

from __future__ import annotations

import io
import time
from collections import Counter
from typing import Any

import pytest
from commands_fixtures import outbox_fixture  # noqa: F401 (fixture `outbox`)
from commands_support import published
from cqrs_replica_models import AuthorRef
from cqrs_testproject.master_app.models import Author, FilteredItem
from django.core.management import call_command
from django.core.management.base import CommandError
from replica_support import memory_cqrs_fixture  # noqa: F401 (fixture `memory_cqrs`)

from cqrs_core.testing._consuming import consume_until
from dj_cqrs.consumer import make_handler

pytestmark = pytest.mark.django_db(transaction=True)


def make_authors(count: int) -> list[int]:
    Author.objects.bulk_create(
        [Author(name=f"author {i}", email=f"a{i}@example.com") for i in range(count)],
        batch_size=2000,
    )
    return list(Author.objects.order_by("pk").values_list("pk", flat=True))


def run(*args: str, **kwargs: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_without_filter_syncs_every_row_once_in_batches(outbox):
    pks = make_authors(20000)
    out, err = run("cqrs_sync", "--cqrs-id", "author", "-b", "3000")
    sent = published(outbox)
    counts = Counter(payload.instance_pk for _, payload in sent)
    assert sorted(counts) == pks
    assert set(counts.values()) == {1}
    assert {key for key, _ in sent} == {"author"}  # broadcast
    assert {payload.signal_type.value for _, payload in sent} == {"SYNC"}
    assert out == "Done!\n20000 instance(s) synced.\n20000 instance(s) processed.\n"
    assert err == "author: 20000 SYNC(s) sent to every replica.\n"


def test_sync_through_the_outbox(settings, outbox):
    """With the default publishing mode the SYNCs go through the outbox to the broker."""
    from dj_cqrs import conf

    settings.CQRS = {**settings.CQRS, "master": {"CQRS_MESSAGE_TTL": 86400}}
    conf.reset_transport()
    pks = make_authors(60)
    _, err = run("cqrs_sync", "--cqrs-id", "author", "-b", "25")
    assert "author: 60 SYNC(s) sent to every replica." in err
    deadline = time.monotonic() + 30  # the relay's job if the fast path was too slow
    while len(published(outbox)) < 60 and time.monotonic() < deadline:
        time.sleep(0.2)
        call_command("cqrs_relay", "--once", "--grace", "0", stdout=io.StringIO())
    assert sorted(p.instance_pk for _, p in published(outbox)) == pks


def test_filter_selects_rows(outbox):
    pks = make_authors(50)
    out, _ = run("cqrs_sync", "-cid", "author", "-f", f'{{"id__in": [{pks[3]}, {pks[7]}]}}')
    assert sorted(p.instance_pk for _, p in published(outbox)) == [pks[3], pks[7]]
    assert out == "Done!\n2 instance(s) synced.\n2 instance(s) processed.\n"


def test_queue_directs_the_sync_to_one_replica(outbox):
    make_authors(5)
    run("cqrs_sync", "--cqrs-id", "author", "-q", "billing")
    sent = published(outbox)
    assert len(sent) == 5
    assert {key for key, _ in sent} == {"cqrs.billing.author"}


def test_payload_is_the_master_serialization(outbox):
    author = Author.objects.create(name="Ada", email="ada@example.com")
    outbox.unlink(missing_ok=True)  # drop the SAVE of the create
    run("cqrs_sync", "--cqrs-id", "author")
    [(_, payload)] = published(outbox)
    assert payload.instance_pk == author.pk
    assert dict(payload.instance_data) == author.to_cqrs_dict()
    assert payload.expires is not None


def test_is_sync_instance_is_respected(outbox):
    FilteredItem.objects.bulk_create(
        [FilteredItem(title="yes", syncable=True), FilteredItem(title="no", syncable=False)]
    )
    out, err = run("cqrs_sync", "--cqrs-id", "filtered_item")
    assert [p.instance_data["title"] for _, p in published(outbox)] == ["yes"]
    assert out == "Done!\n1 instance(s) synced.\n2 instance(s) processed.\n"
    assert "1 skipped by is_sync_instance()" in err


def test_a_failing_row_is_reported_and_the_run_goes_on(outbox, monkeypatch):
    pks = make_authors(30)
    bad = pks[12]
    original = Author.to_cqrs_dict

    def to_cqrs_dict(self, *args, **kwargs):
        if self.pk == bad:
            raise ValueError("cannot serialize this one")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Author, "to_cqrs_dict", to_cqrs_dict)
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 row\\(s\\) of 'author' could not be synced"):
        call_command(
            "cqrs_sync", "--cqrs-id", "author", "-b", "5", stdout=out, stderr=io.StringIO()
        )
    assert out.getvalue() == (
        f"\nSync record failed for pk={bad}: ValueError: cannot serialize this one\n"
        "Done!\n29 instance(s) synced.\n30 instance(s) processed.\n"
    )
    assert sorted(p.instance_pk for _, p in published(outbox)) == [pk for pk in pks if pk != bad]


def test_a_batch_the_broker_refuses_is_reported(settings, outbox, tmp_path):
    """Publishing directly (`'publish': 'on_commit'`, no outbox), a refused batch is a failure."""
    from dj_cqrs import conf

    make_authors(12)
    settings.CQRS = {
        **settings.CQRS,
        "url": f"file://{tmp_path}/missing/dir/out.jsonl",
        "master": {**settings.CQRS.get("master", {}), "publish": "on_commit"},
    }
    conf.reset_transport()
    err = io.StringIO()
    with pytest.raises(CommandError, match="12 row\\(s\\) of 'author' could not be synced"):
        call_command(
            "cqrs_sync", "--cqrs-id", "author", "-b", "5", stdout=io.StringIO(), stderr=err
        )
    assert err.getvalue().count("the broker did not accept a batch") == 3


def test_progress_prints_plain_lines_when_not_a_terminal(outbox):
    make_authors(40)
    out, err = run("cqrs_sync", "--cqrs-id", "author", "-b", "10", "--progress")
    assert out.splitlines()[0] == "Processing 40 records with batch size 10"
    last = err.strip().splitlines()[-2]
    assert last.startswith("author: synced 40/40 (100.0%), ")
    assert "/s, in 0:00:" in last
    assert "\r" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cqrs-id", "autor"], "Unknown master CQRS_ID 'autor'. Did you mean 'author'?"),
        (["--cqrs-id", "author", "-f", "{id: 1}"], "--filter is not valid JSON"),
        (["--cqrs-id", "author", "-f", "[1, 2]"], "--filter must be a JSON object"),
        (["--cqrs-id", "author", "-f", '{"nope": 1}'], "Bad filter kwargs! Cannot resolve keyword"),
        (["--cqrs-id", "author", "-f", '{"id": "x"}'], "does not apply to Author"),
        (["--cqrs-id", "author", "-b", "0"], "--batch must be a positive number"),
        (["--cqrs-id", "silent_item"], "CQRS_PRODUCE = False"),
    ],
)
def test_bad_input_is_a_command_error(outbox, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace("[", r"\[")):
        run("cqrs_sync", *args)
    assert published(outbox) == []


def test_bad_input_exits_non_zero_from_the_command_line(outbox):
    import subprocess

    from commands_support import manage, manage_env

    env = manage_env(CQRS_TEST_TRANSPORT="memory")
    result = subprocess.run(
        manage("cqrs_sync", "--cqrs-id", "author", "-f", "not json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "CommandError: Bad filter kwargs!\n--filter is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_synced_rows_reach_the_replica(memory_cqrs):
    """Through the memory transport and the replica handler, the replica ends equal."""
    pks = make_authors(300)
    AuthorRef.objects.all().delete()  # nothing was published by bulk_create anyway
    run("cqrs_sync", "--cqrs-id", "author", "-b", "64")
    consume_until(
        memory_cqrs,
        make_handler(["author"]),
        lambda: AuthorRef.objects.count() == len(pks),
        cqrs_ids=["author"],
        timeout=60,
    )
    master = {a.pk: (a.name, a.email, a.cqrs_revision) for a in Author.objects.all()}
    replica = {a.pk: (a.name, a.email, a.cqrs_revision) for a in AuthorRef.objects.all()}
    assert replica == master


def test_progress_bar_on_a_terminal(outbox, tmp_path):
    """On a TTY the bar is redrawn in place and ends with the totals."""
    import os
    import pty
    import subprocess

    from commands_support import TRANSPORT, manage, manage_env

    make_authors(500)
    master, slave = pty.openpty()
    env = manage_env(CQRS_TEST_TRANSPORT=TRANSPORT, CQRS_TEST_URL=f"file://{tmp_path}/s.jsonl")
    try:
        result = subprocess.run(
            manage("cqrs_sync", "--cqrs-id", "author", "-b", "50", "--progress"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=60,
            check=False,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    shown = b"".join(chunks).decode()
    assert result.returncode == 0, shown
    assert "\r\x1b[2K[" + "#" * 30 + "] author: synced 500/500 (100.0%)" in shown
    assert len(published(tmp_path / "s.jsonl")) == 500
