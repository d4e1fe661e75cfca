"""The outbox on the master with a recording transport: writing, fast path, relay, commands."""

from __future__ import annotations

import io
import json
import os
import threading
from typing import Any

import django
import pytest
from cqrs_testproject.master_app.models import Author, Product
from cqrs_testproject.master_app.testing import use_recording
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dj_cqrs.master.serialization import DEFERRED_KEY
from dj_cqrs.outbox import background_publisher
from dj_cqrs.outbox.checks import check_outbox_settings
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.outbox.relay import Relay
from dj_cqrs.outbox.settings import outbox_settings

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorder(settings: Any) -> Any:
    background_publisher.resume()
    yield from use_recording(settings, outbox={"grace": 0.0})
    background_publisher.resume()


def set_outbox(settings: Any, **options: Any) -> None:
    master = dict(settings.CQRS["master"])
    master["outbox"] = {**master.get("outbox", {}), **options}
    settings.CQRS = {**settings.CQRS, "master": master}


def bodies(recorder: Any) -> list[dict[str, Any]]:
    return [s.data for s in recorder.sent()]


def outbox_inserts(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith(
            f"INSERT INTO {connection.ops.quote_name(OutboxEvent._meta.db_table)}"
        )
    ]


def test_outbox_is_the_default() -> None:
    assert outbox_settings().mode == "outbox"


def test_save_writes_one_row_in_its_transaction_and_the_fast_path_sends_it(recorder: Any) -> None:
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        author = Author.objects.create(name="Ann")
        row = OutboxEvent.objects.get()  # visible inside the transaction: same commit
        assert (row.cqrs_id, row.instance_pk, row.signal_type) == ("author", str(author.pk), "SAVE")
        assert recorder.sent() == []
    assert len(outbox_inserts(queries)) == 1
    assert [b["instance_pk"] for b in bodies(recorder)] == [author.pk]
    assert bodies(recorder)[0]["expires"] is not None
    assert not OutboxEvent.objects.exists()  # keep_days 0: deleted once sent


def test_the_committing_thread_never_waits_for_the_broker(recorder: Any, monkeypatch: Any) -> None:
    from cqrs_testproject.master_app.testing import RecordingTransport

    release = threading.Event()
    publish = RecordingTransport._publish

    def blocked(self: Any, messages: Any) -> None:
        assert release.wait(60)
        publish(self, messages)

    monkeypatch.setattr(RecordingTransport, "_publish", blocked)
    try:
        author = Author.objects.create(name="Ann")  # returns while the broker call hangs
        assert RecordingTransport.batches == []
        assert OutboxEvent.objects.count() == 1
    finally:
        release.set()
    assert [b["instance_pk"] for b in bodies(recorder)] == [author.pk]
    assert not OutboxEvent.objects.exists()


def test_a_forked_child_gets_its_own_empty_publisher(recorder: Any) -> None:
    Author.objects.create(name="Ann")
    parent = background_publisher._current()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            child = background_publisher._current()
            ok = child is not parent and child.pid == os.getpid() and not child.queue
            code = 0 if ok and background_publisher.flush(0) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(bodies(recorder)) == 1


def test_stored_body_is_what_is_sent_but_the_instance_data(recorder: Any, settings: Any) -> None:
    set_outbox(settings, keep_days=1)
    product = Product.objects.create(name="a/b", price="12.50")
    assert background_publisher.flush(30)
    row = OutboxEvent.objects.get()
    assert row.sent_at is not None
    sent = bodies(recorder)[0]
    stored = json.loads(row.body)
    assert stored["expires"] is None
    assert stored["instance_data"] == {DEFERRED_KEY: "master_app.Product"}  # serialized on send
    # the meta function gets the serialized data (3.x keywords), so it runs on send too
    assert (stored["meta"], sent["meta"]) == (None, {})
    volatile = ("expires", "instance_data", "meta")
    assert {k: v for k, v in sent.items() if k not in volatile} == {
        k: v for k, v in stored.items() if k not in volatile
    }
    assert sent["instance_data"]["id"] == product.pk
    assert sent["instance_data"]["name"] == "a/b"


def test_rolled_back_transaction_writes_and_sends_nothing(recorder: Any) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Author.objects.create(name="Ann")
        assert OutboxEvent.objects.count() == 1
        raise RuntimeError
    assert not OutboxEvent.objects.exists()
    assert recorder.sent() == []


def test_rolled_back_savepoint_drops_only_its_rows(recorder: Any) -> None:
    with transaction.atomic():
        kept = Author.objects.create(name="kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Author.objects.create(name="gone")
            raise RuntimeError
    assert [b["instance_pk"] for b in bodies(recorder)] == [kept.pk]


def test_two_saves_in_one_transaction_leave_one_row(recorder: Any) -> None:
    with transaction.atomic():
        author = Author.objects.create(name="v1")
        author.name = "v2"
        author.save()
        assert OutboxEvent.objects.count() == 1
    sent = bodies(recorder)
    assert len(sent) == 1 and sent[0]["instance_data"]["name"] == "v2"


def test_bulk_create_is_one_insert(recorder: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        Author.cqrs.bulk_create([Author(name=f"a{i}") for i in range(50)])
    assert len(outbox_inserts(queries)) == 1
    assert len(bodies(recorder)) == 50
    assert len(recorder.batches) == 1


def test_delete_and_sync_go_through_the_outbox(recorder: Any, settings: Any) -> None:
    set_outbox(settings, keep_days=1)
    author = Author.objects.create(name="Ann")
    author.cqrs_sync(queue="one_replica")
    pk = author.pk
    author.delete()
    rows = list(OutboxEvent.objects.order_by("id").values_list("signal_type", "queue"))
    assert rows == [("SAVE", None), ("SYNC", "one_replica"), ("DELETE", None)]
    assert [b["signal_type"] for b in bodies(recorder)] == ["SAVE", "SYNC", "DELETE"]
    assert {b["instance_pk"] for b in bodies(recorder)} == {pk}


def test_broker_down_keeps_rows_never_raises_and_the_relay_sends_them(
    recorder: Any, caplog: Any
) -> None:
    recorder.fail_next = 2  # the fast path and its retry on a new connection
    author = Author.objects.create(name="v1")  # must not raise
    assert recorder.sent() == []
    row = OutboxEvent.objects.get()
    assert row.sent_at is None and row.attempts == 1 and "unreachable" in row.last_error
    assert background_publisher.paused()
    author.name = "v2"
    author.save()  # paused: left to the relay without trying the broker
    assert recorder.sent() == [] and OutboxEvent.objects.count() == 2
    sent = Relay(settings=outbox_settings()).run(until_empty=True)
    assert sent == 2
    # The relay serializes from the committed rows: both carry the current state (replicas
    # apply revision 1 once).
    assert [b["instance_data"]["cqrs_revision"] for b in bodies(recorder)] == [1, 1]
    assert not OutboxEvent.objects.exists()


def test_fast_path_may_overtake_an_unsent_event_of_the_same_row_which_is_then_stale(
    recorder: Any,
) -> None:
    """No per-save check query: a fresh event goes out at once even if an older event of the
    same row waits in the outbox. The older one follows (relay) with a lower revision, which
    a replica skips as stale, so the replica ends in the newest state."""
    author = Author.objects.create(name="v1")
    other = Author.objects.create(name="other")
    recorder.clear()
    OutboxEvent.objects.all().delete()
    # An earlier event of `author`, left unsent (e.g. its process was killed).
    with transaction.atomic():
        OutboxEvent.objects.create(
            cqrs_id="author",
            instance_pk=str(author.pk),
            signal_type="SAVE",
            body=json.dumps(
                {
                    "signal_type": "SAVE",
                    "cqrs_id": "author",
                    "instance_data": {"id": author.pk, "cqrs_revision": 0, "name": "v1"},
                    "instance_pk": author.pk,
                }
            ),
            created_at=timezone.now(),
        )
    author.name = "v2"
    author.save()
    other.name = "x"
    other.save()
    assert sorted(b["instance_pk"] for b in bodies(recorder)) == sorted([author.pk, other.pk])
    assert OutboxEvent.objects.count() == 1  # the old event still waits for the relay
    Relay(settings=outbox_settings()).run(until_empty=True)
    author_events = [b for b in bodies(recorder) if b["instance_pk"] == author.pk]
    assert [b["instance_data"]["name"] for b in author_events] == ["v2", "v1"]
    revisions = [b["instance_data"]["cqrs_revision"] for b in author_events]
    assert revisions == [1, 0]  # the late one is older: a replica holding revision 1 skips it
    assert not OutboxEvent.objects.exists()


def test_relay_never_sends_a_row_held_by_another_relay_nor_what_follows_it(
    recorder: Any, settings: Any
) -> None:
    set_outbox(settings, fast_path=False)
    a = Author.objects.create(name="a1")
    a.name = "a2"
    a.save()
    b = Author.objects.create(name="b1")
    ids = list(OutboxEvent.objects.order_by("id").values_list("id", flat=True))
    assert len(ids) == 3
    relay = Relay(settings=outbox_settings())
    first = OutboxEvent.objects.get(id=ids[0])
    # Another relay holds a's first event: a's second must wait, b can go.
    assert [
        r.id
        for r in relay.in_order(list(OutboxEvent.objects.filter(id__in=ids[1:]).order_by("id")))
    ] == [ids[2]]
    assert first.instance_pk == str(a.pk)
    assert relay.run(until_empty=True) == 3
    assert [(x["instance_pk"], x["instance_data"]["name"]) for x in bodies(recorder)] == [
        (a.pk, "a2"),  # serialized when sent: the committed state
        (a.pk, "a2"),
        (b.pk, "b1"),
    ]


def test_claims_stop_a_second_relay_from_taking_the_same_rows(recorder: Any, settings: Any) -> None:
    set_outbox(settings, fast_path=False)
    Author.cqrs.bulk_create([Author(name=f"a{i}") for i in range(5)])
    one, two = Relay(settings=outbox_settings()), Relay(settings=outbox_settings())
    if connection.features.has_select_for_update_skip_locked:
        pytest.skip("covered by the SKIP LOCKED path (test_outbox_faults runs two relays)")
    now = timezone.now()
    first_two = list(OutboxEvent.objects.order_by("id").values_list("id", flat=True)[:2])
    OutboxEvent.objects.filter(id__in=first_two).update(
        claimed_by=one.token, claimed_until=now + timezone.timedelta(seconds=60)
    )
    assert two.run_once() == 3
    assert len(bodies(recorder)) == 3
    OutboxEvent.objects.filter(claimed_by=one.token).update(
        claimed_until=now - timezone.timedelta(seconds=1)
    )
    assert two.run_once() == 2  # an expired lease is taken over


def test_on_commit_mode_writes_no_rows(recorder: Any, settings: Any) -> None:
    settings.CQRS = {**settings.CQRS, "master": {**settings.CQRS["master"], "publish": "on_commit"}}
    Author.objects.create(name="Ann")
    assert not OutboxEvent.objects.exists()
    assert len(bodies(recorder)) == 1


def test_retention_keeps_sent_rows_and_purge_deletes_old_ones(recorder: Any, settings: Any) -> None:
    set_outbox(settings, keep_days=1)
    Author.objects.create(name="Ann")
    Author.objects.create(name="Bob")
    assert background_publisher.flush(30)  # both marked sent before one of them is made old
    OutboxEvent.objects.filter(id=OutboxEvent.objects.order_by("id").first().id).update(
        sent_at=timezone.now() - timezone.timedelta(days=2)
    )
    out = io.StringIO()
    call_command("cqrs_outbox", "--purge", stdout=out)
    assert "Deleted 1 sent outbox row(s)" in out.getvalue()
    assert OutboxEvent.objects.count() == 1


def test_cqrs_outbox_shows_backlog_and_cqrs_relay_once_sends_it(
    recorder: Any, settings: Any
) -> None:
    set_outbox(settings, fast_path=False)
    Author.objects.create(name="Ann")
    Product.objects.create(name="p")
    out = io.StringIO()
    call_command("cqrs_outbox", "--json", stdout=out)
    state = json.loads(out.getvalue())
    assert state["pending"] == 2
    assert state["pending_by_cqrs_id"] == {"author": 1, "product": 1}
    assert state["oldest_age_seconds"] >= 0
    out = io.StringIO()
    call_command("cqrs_relay", "--once", "--grace", "0", stdout=out)
    assert "sending 2 event(s)" in out.getvalue()
    assert len(bodies(recorder)) == 2
    out = io.StringIO()
    call_command("cqrs_outbox", stdout=out)
    assert "Pending events: 0" in out.getvalue()


def test_relay_sends_the_rest_past_a_row_whose_body_is_not_an_event(
    recorder: Any, settings: Any
) -> None:
    set_outbox(settings, fast_path=False)
    broken = Author.objects.create(name="Ann")
    Product.objects.create(name="p")
    OutboxEvent.objects.filter(instance_pk=str(broken.pk), cqrs_id="author").update(body="{oops")
    out = io.StringIO()
    call_command("cqrs_relay", "--once", "--grace", "0", stdout=out)  # returns: not stuck
    assert [b["cqrs_id"] for b in bodies(recorder)] == ["product"]
    row = OutboxEvent.objects.get(cqrs_id="author")
    assert row.sent_at is None  # kept, never sent
    assert "undecodable body" in row.last_error


@pytest.mark.parametrize(
    ("master", "text"),
    [
        ({"publish": "later"}, "is not a publishing mode"),
        ({"outbox": {"grace": -1}}, "'grace'"),
        ({"outbox": {"batch_size": 0}}, "'batch_size'"),
        ({"outbox": {"speed": 1}}, "Unknown key"),
    ],
)
def test_checks_report_invalid_settings(settings: Any, master: dict[str, Any], text: str) -> None:
    settings.CQRS = {**settings.CQRS, "master": master}
    errors = check_outbox_settings(None)
    assert errors and errors[0].id == "cqrs.E101" and text in errors[0].msg


@pytest.mark.skipif(django.VERSION < (5, 1), reason="transaction_mode needs Django 5.1")
def test_check_warns_about_sqlite_without_immediate_transactions(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = connections.settings["default"]
    if not default["ENGINE"].endswith("sqlite3"):
        pytest.skip("needs the SQLite test database")
    monkeypatch.setitem(default, "OPTIONS", {**default["OPTIONS"], "transaction_mode": "IMMEDIATE"})
    assert check_outbox_settings(None) == []
    monkeypatch.setitem(default, "OPTIONS", {"timeout": 30})
    (warning,) = check_outbox_settings(None)
    assert warning.id == "cqrs.W101" and "IMMEDIATE" in warning.hint
    settings.CQRS = {**settings.CQRS, "master": {"publish": "on_commit"}}
    assert check_outbox_settings(None) == []


def test_admin_is_read_only_and_publishes_again(recorder: Any, settings: Any, client: Any) -> None:
    from django.contrib.auth.models import User

    set_outbox(settings, keep_days=1)
    author = Author.objects.create(name="Ann")
    row = OutboxEvent.objects.get()
    recorder.clear()
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    assert client.get("/admin/dj_cqrs/outboxevent/add/").status_code == 403
    assert client.get(f"/admin/dj_cqrs/outboxevent/{row.pk}/change/").status_code == 200
    response = client.post(
        "/admin/dj_cqrs/outboxevent/",
        {"action": "publish_again", "_selected_action": [row.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert [b["instance_pk"] for b in bodies(recorder)] == [author.pk]
    assert any("published again" in str(m) for m in response.context["messages"])


def test_listen_wakes_on_notify() -> None:
    from dj_cqrs.outbox import notify

    if not notify.supported("default"):
        pytest.skip("LISTEN/NOTIFY needs PostgreSQL (CQRS_TEST_DB=postgres)")
    listener = notify.Listener("default")
    try:
        assert listener.wait(0.01) is False  # opens the connection and LISTENs
        notify.notify("default")
        assert listener.wait(30) is True
    finally:
        listener.close()
