"""Replica operations: tombstone retention and purge, messages no model takes, dead-letter dumps.

The broker-level checks (a queue drains of messages for a removed model, a hostile dead letter
dumped from RabbitMQ) are in tests/integration/test_replica_operations_e2e.py.
"""

from __future__ import annotations

import datetime
import io
import json
import threading
import time
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from replica_support import data, memory_cqrs_fixture, payload  # noqa: F401 (fixture `memory_cqrs`)

from cqrs_core import codec
from cqrs_core.constants import SignalType
from cqrs_core.messages import DeadLetter, Inbound, Outcome
from dj_cqrs.consumer import make_handler
from dj_cqrs.models import Tombstone
from dj_cqrs.replica import retention

DEADLINE = 60.0
"""Hang guard for conditions reached by a consumer thread (not a speed assertion)."""


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def tombstone(pk: int, age: float, cqrs_id: str = "item") -> Tombstone:
    """A tombstone written `age` seconds ago (`deleted_at` is auto_now: set it afterwards)."""
    made = Tombstone.objects.create(cqrs_id=cqrs_id, instance_pk=str(pk), cqrs_revision=1)
    when = timezone.now() - datetime.timedelta(seconds=age)
    Tombstone.objects.filter(pk=made.pk).update(deleted_at=when)
    return made


def replica(settings: Any, **keys: Any) -> None:
    settings.CQRS = {**settings.CQRS, "replica": {**settings.CQRS.get("replica", {}), **keys}}


def master(settings: Any, **keys: Any) -> None:
    settings.CQRS = {**settings.CQRS, "master": {**settings.CQRS.get("master", {}), **keys}}


# -- retention rule ------------------------------------------------------------------------------


def test_default_retention_is_ttl_plus_retry_period_plus_margin(settings):
    master(settings, CQRS_MESSAGE_TTL=86400)
    replica(settings, CQRS_MAX_RETRIES=30, CQRS_RETRY_DELAY=2)
    assert retention.retention() == 86400 + 30 * 2 + 3600


@pytest.mark.parametrize(
    ("section", "key"), [("master", "CQRS_MESSAGE_TTL"), ("replica", "CQRS_MAX_RETRIES")]
)
def test_no_automatic_purge_when_a_message_can_live_forever(settings, section, key):
    (master if section == "master" else replica)(settings, **{key: None})
    assert retention.retention() is None


def test_the_setting_wins_and_none_keeps_forever(settings):
    replica(settings, tombstone_retention=120)
    assert retention.retention() == 120.0
    replica(settings, tombstone_retention=None)
    assert retention.retention() is None
    replica(settings, tombstone_retention="1 day")
    with pytest.raises(ValueError, match="tombstone_retention'] must be a number of seconds"):
        retention.retention()


def test_the_setting_is_a_known_key(settings):
    from dj_cqrs.checks import check_settings

    replica(settings, tombstone_retention=3600)
    assert not [m for m in check_settings() if "tombstone_retention" in m.msg]


# -- cqrs_tombstones ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_purge_deletes_only_tombstones_past_the_retention(settings):
    replica(settings, tombstone_retention=3600)
    old = [tombstone(pk, age=7200) for pk in range(3)]
    young = tombstone(10, age=60)
    out, _ = run("cqrs_tombstones", "purge", "--dry-run")
    assert "3 tombstone(s) older than 3600 s would be deleted (dry run)" in out
    assert Tombstone.objects.count() == 4
    out, _ = run("cqrs_tombstones", "purge")
    assert "3 tombstone(s) older than 3600 s deleted" in out
    assert list(Tombstone.objects.values_list("pk", flat=True)) == [young.pk]
    assert not Tombstone.objects.filter(pk__in=[t.pk for t in old]).exists()


@pytest.mark.django_db
def test_purge_older_than_overrides_and_batches(settings, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_SIZE", 2)
    for pk in range(5):
        tombstone(pk, age=600)
    deleted, finished = retention.purge("default", retention.cutoff(300), batch_size=2)
    assert (deleted, finished) == (5, True)
    tombstone(9, age=600)
    out, _ = run("cqrs_tombstones", "purge", "--older-than", "300")
    assert "1 tombstone(s) older than 300 s deleted" in out


@pytest.mark.django_db
def test_purge_refuses_when_tombstones_are_kept_forever(settings):
    master(settings, CQRS_MESSAGE_TTL=None)
    tombstone(1, age=10**7)
    with pytest.raises(CommandError, match="Tombstones are kept forever.*--older-than"):
        run("cqrs_tombstones", "purge")
    assert Tombstone.objects.count() == 1


@pytest.mark.django_db
def test_stats_counts_per_cqrs_id(settings):
    replica(settings, tombstone_retention=7200)
    tombstone(1, age=10)
    tombstone(2, age=20)
    tombstone(1, age=30, cqrs_id="author")
    out, _ = run("cqrs_tombstones", "stats")
    lines = out.splitlines()
    assert lines[0] == "retention: 7200 s"
    assert [line.split("\t")[:3] for line in lines[1:]] == [
        ["default", "author", "1"],
        ["default", "item", "2"],
        ["default", "total", "3"],
    ]


# -- the purge inside the consumer ------------------------------------------------------------


@pytest.mark.django_db
def test_purger_deletes_when_due_within_its_budget(settings, monkeypatch):
    replica(settings, tombstone_retention=3600)
    for pk in range(7):
        tombstone(pk, age=7200)
    monkeypatch.setattr(retention, "BATCH_SIZE", 2)
    monkeypatch.setattr(retention, "TICK_BUDGET", 0.0)  # one batch per tick
    purger = retention.TombstonePurger(["default"], every=3600)
    purger.tick()
    assert Tombstone.objects.count() == 7  # not due yet
    purger.next_at = 0.0
    counts = []
    for _ in range(5):
        purger.tick()
        counts.append(Tombstone.objects.count())
    assert counts == [5, 3, 1, 0, 0]


@pytest.mark.django_db(transaction=True)
def test_consume_purges_expired_tombstones(memory_cqrs, settings, monkeypatch):
    """`cqrs_consume`'s consumer purges by itself, between batches, without any command."""
    from dj_cqrs.consumer import consume

    replica(settings, tombstone_retention=3600)
    old, young = tombstone(1, age=7200), tombstone(2, age=60)
    monkeypatch.setattr(retention, "PURGE_EVERY", 0.2)
    thread = threading.Thread(target=consume, kwargs={"transport": memory_cqrs}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while Tombstone.objects.filter(pk=old.pk).exists():
            assert time.monotonic() < deadline, "the consumer never purged the old tombstone"
            assert thread.is_alive(), "the consumer stopped"
            time.sleep(0.1)
    finally:
        memory_cqrs.stop()
        thread.join(DEADLINE)
    assert Tombstone.objects.filter(pk=young.pk).exists()


# -- messages nobody takes ------------------------------------------------------------------------


def _inbound(cqrs_id: str, pk: int) -> Inbound:
    return Inbound(codec.encode(payload(cqrs_id, data(pk, 0, 0, name="x"), SignalType.SAVE)))


@pytest.mark.django_db
def test_dispatch_dead_letters_an_id_with_no_model_and_releases_a_filtered_one(memory_cqrs):
    """Through the transport's dispatch as `consume` runs it: no model → DEAD, not RELEASE.

    The handler is marked as deciding ids outside the consumed ones; a plain handler still
    gets cqrs-core's default (RELEASE without seeing them).
    """
    handler = make_handler(["item"])
    messages = [_inbound("gone_model", 1), _inbound("author", 2), _inbound("item", 3)]
    settled = memory_cqrs.dispatch(handler, messages, cqrs_ids=frozenset({"item"}))
    assert [s.outcome.kind.value for s in settled] == ["dead", "release", "applied"]
    assert settled[0].outcome.reason.startswith(
        "no replica model has CQRS_ID 'gone_model' in this service"
    )
    seen = []
    plain = memory_cqrs.dispatch(
        lambda payloads: seen.extend(payloads) or [Outcome.applied() for _ in payloads],
        [_inbound("gone_model", 4)],
        cqrs_ids=frozenset({"item"}),
    )
    assert [s.outcome.kind.value for s in plain] == ["release"] and seen == []


# -- dead-letter dump --------------------------------------------------------------------------

HOSTILE = (
    b'{"cqrs_id": "item", "note": "\x1b]0;pwned\x07 done\r\x1b[2J\x08 \xe2\x80\xae'
    b'gnp.exe \\u001b \xff"'
)


@pytest.mark.django_db
def test_dump_escapes_control_characters_and_json_keeps_the_exact_body(memory_cqrs):
    dlq = memory_cqrs.common.require_dead_letter_queue()
    memory_cqrs.broker.dead_letter(dlq, DeadLetter(HOSTILE, reason="bad \x1b[31mred\r"))
    out, err = run("cqrs_dead_letters", "dump")
    for forbidden in ("\x1b", "\x07", "\r", "\x08", "\u202e", "\udcff"):
        assert forbidden not in out + err
    assert "\\u001b]0;pwned\\u0007 done\\u000d\\u001b[2J\\u0008 \\u202egnp.exe" in out
    assert "#1 bad \\u001b[31mred\\u000d" in err
    out, _ = run("cqrs_dead_letters", "dump", "--format", "json")
    [record] = [json.loads(line) for line in out.splitlines()]
    assert record["body"].encode("utf-8", "surrogateescape") == HOSTILE
    assert record["reason"] == "bad \x1b[31mred\r"
    assert out.isascii()


@pytest.mark.django_db
def test_releases_are_bounded_by_count_and_time(monkeypatch):
    """A worker's own CQRS_IDs never reach the bound; another id is dead past both bounds."""
    from dj_cqrs.replica import releases

    monkeypatch.setattr(releases, "RELEASE_LIMIT", 3)
    monkeypatch.setattr(releases, "RELEASE_WINDOW", 3600.0)
    handler = make_handler(["item"])
    other = payload("author", data(1, 0, 0, name="a", email="a@example.com"))
    kinds = [handler([other])[0].kind.value for _ in range(5)]
    assert kinds == ["release"] * 5  # the count is reached, not the time: a sibling may restart
    monkeypatch.setattr(releases, "RELEASE_WINDOW", 0.0)
    [outcome] = handler([other])
    assert outcome.kind.value == "dead"
    assert outcome.reason.startswith("no worker of this service takes CQRS_ID 'author'")
    assert "--cqrs-id item" in outcome.reason
    [again] = handler([other])
    assert again.kind.value == "release"  # counted afresh, as after `cqrs_dead_letters retry`
