"""The admin status page: the numbers it gathers (`observability.status`) and who may read it.

Runs on every database of the suite (SQLite, then PostgreSQL and MariaDB with CQRS_TEST_DB).
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cqrs_replica_models import AuthorRef, ProductRef, RawEvents
from django.contrib.auth.models import Permission, User
from replica_support import memory_cqrs_fixture  # noqa: F401  (fixture `memory_cqrs`)

from cqrs_core.messages import DeadLetter
from cqrs_core.transports.memory import MemoryTransport
from dj_cqrs.observability import status
from dj_cqrs.observability.status_admin import duration
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.replica.tombstone import Tombstone

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
URL = "/admin/dj_cqrs/outboxevent/status/"


def ago(seconds: float) -> datetime.datetime:
    return NOW - datetime.timedelta(seconds=seconds)


def outbox_row(cqrs_id: str, *, created: float, sent: float | None = None, **extra: Any) -> Any:
    return OutboxEvent.objects.create(
        cqrs_id=cqrs_id,
        instance_pk="1",
        signal_type="SAVE",
        body="{}",
        created_at=ago(created),
        sent_at=ago(sent) if sent is not None else None,
        **extra,
    )


@pytest.fixture
def keep_sent(settings: Any) -> None:
    """Sent rows are kept (the publish rate can be read from the table)."""
    master = dict(settings.CQRS["master"])
    master["outbox"] = {**master.get("outbox", {}), "keep_days": 7, "fast_path": False}
    settings.CQRS = {**settings.CQRS, "master": master}


@pytest.fixture
def outbox_state(keep_sent: None) -> None:
    """5 unsent rows (2 set aside), the oldest 300 s old; sent: 3 in the last minute, 2 more
    in the last 5 minutes, 4 older."""
    outbox_row("product", created=300)
    outbox_row("product", created=120)
    outbox_row("author", created=30)
    outbox_row("author", created=45, set_aside_at=ago(40), last_error="refused")
    outbox_row("product", created=50, set_aside_at=ago(49), last_error="refused")
    for sent in (1, 20, 59):
        outbox_row("product", created=sent + 1, sent=sent)
    for sent in (61, 299):
        outbox_row("author", created=sent + 1, sent=sent)
    for sent in (301, 3600, 7200, 86400):
        outbox_row("product", created=sent + 1, sent=sent)


def test_outbox_status_counts_the_rows(outbox_state: None) -> None:
    found = status.outbox_status(now=NOW)
    assert found.unsent == 5
    assert found.set_aside == 2
    assert found.oldest_unsent == ago(300)
    assert found.oldest_unsent_age == 300.0
    assert found.sent_recently == {60: 3, 300: 5}
    assert found.rates == {60: 3 / 60, 300: 5 / 300}
    assert found.keep_days == 7
    assert [(r.cqrs_id, r.unsent, r.set_aside) for r in found.by_cqrs_id] == [
        ("product", 3, 1),
        ("author", 2, 1),
    ]


def test_outbox_status_of_an_empty_outbox_without_kept_rows() -> None:
    found = status.outbox_status(now=NOW)
    assert (found.unsent, found.set_aside, found.oldest_unsent, found.oldest_unsent_age) == (
        0,
        0,
        None,
        0.0,
    )
    assert found.sent_recently == {}  # keep_days 0: sent rows are deleted, no rate to read
    assert found.by_cqrs_id == []


def _product(pk: int, revision: int, updated: float) -> None:
    ProductRef.objects.create(
        id=pk, title=f"p{pk}", cqrs_revision=revision, cqrs_updated=ago(updated)
    )


def test_replica_status_shows_the_newest_applied_row_or_tombstone() -> None:
    _product(1, 4, 100)
    _product(2, 7, 10)  # the newest product row
    _product(3, 0, 50)
    AuthorRef.objects.create(id=9, name="a", cqrs_revision=2, cqrs_updated=ago(500))
    Tombstone.objects.create(
        cqrs_id="author", instance_pk="8", cqrs_revision=5, cqrs_updated=ago(5)
    )
    Tombstone.objects.create(
        cqrs_id="product", instance_pk="4", cqrs_revision=1, cqrs_updated=ago(20)
    )  # older than product 2: not the newest

    found = {row.cqrs_id: row for row in status.replica_status(now=NOW)}
    product = found["product"]
    assert (product.model, product.stored, product.last_pk, product.last_revision) == (
        ProductRef._meta.label,
        True,
        "2",
        7,
    )
    assert (product.last_updated, product.age, product.last_was_delete) == (ago(10), 10.0, False)
    author = found["author"]
    assert (author.last_pk, author.last_revision, author.last_was_delete, author.age) == (
        "8",
        5,
        True,
        5.0,
    )
    assert found["voucher"].stored and found["voucher"].last_pk is None  # nothing applied
    assert not found[RawEvents.CQRS_ID].stored  # no table of its own


def test_gather_has_both_sides_in_this_project(outbox_state: None) -> None:
    _product(1, 3, 2)
    found = status.gather(dead_letters=False, now=NOW)
    assert found.outbox is not None and found.outbox.unsent == 5
    assert {r.cqrs_id: r.last_revision for r in found.replicas}["product"] == 3
    assert found.dead_letters is None


def test_dead_letters_are_counted(memory_cqrs: MemoryTransport) -> None:
    assert status.dead_letter_status() == status.DeadLetterStatus(count=0)
    for n in range(3):
        memory_cqrs.broker.dead_letter(
            memory_cqrs._dead_queue, DeadLetter(body=b"{}", reason=f"bad {n}")
        )
    assert status.dead_letter_status().count == 3
    assert len(memory_cqrs.dead_letters()) == 3  # counting takes none away


def test_dead_letters_beyond_the_cap(memory_cqrs: MemoryTransport) -> None:
    for _ in range(status.DEAD_LETTER_CAP + 2):
        memory_cqrs.broker.dead_letter(memory_cqrs._dead_queue, DeadLetter(body=b"{}"))
    found = status.dead_letter_status()
    assert (found.count, found.more) == (status.DEAD_LETTER_CAP, True)


@pytest.fixture
def stuck_broker(memory_cqrs: MemoryTransport, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`dead_letters()` hangs (a broker that does not answer) until the test ends."""
    release = threading.Event()

    def hang(self: MemoryTransport, *, limit: int | None = None) -> list[DeadLetter]:
        release.wait(30)
        return []

    monkeypatch.setattr(MemoryTransport, "dead_letters", hang)
    try:
        yield
    finally:
        release.set()


def test_a_broker_that_does_not_answer_costs_the_timeout_only(stuck_broker: None) -> None:
    found = status.dead_letter_status(timeout=0.2)
    assert found.count is None
    assert found.error == "unavailable: the broker did not answer within 0.2 s"
    assert found.hint == "manage.py cqrs_dead_letters dump"


def test_a_broker_error_is_shown(
    memory_cqrs: MemoryTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: MemoryTransport, *, limit: int | None = None) -> list[DeadLetter]:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(MemoryTransport, "dead_letters", refuse)
    assert status.dead_letter_status().error == "unavailable: connection refused"


def test_a_transport_without_dead_letters(memory_cqrs: MemoryTransport, monkeypatch: Any) -> None:
    monkeypatch.setattr(MemoryTransport, "capabilities", frozenset())
    assert status.dead_letter_status().error == (
        "unavailable: the 'memory' transport keeps no dead letters"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0.25, "250 ms"),
        (12.34, "12.3 s"),
        (250, "4 min 10 s"),
        (7500, "2 h 5 min"),
        (3 * 86400 + 4 * 3600 + 5, "3 d 4 h"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


# -- the page, through Django's test client --------------------------------------------------


def _staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def test_staff_with_the_view_permission_sees_the_page(
    client: Any, outbox_state: None, memory_cqrs: MemoryTransport
) -> None:
    _product(1, 6, 30)
    memory_cqrs.broker.dead_letter(memory_cqrs._dead_queue, DeadLetter(body=b"{}"))
    _staff("viewer", "view_outboxevent")
    client.login(username="viewer", password="pw")
    response = client.get(URL)
    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "admin/dj_cqrs/status.html"
    page = response.content.decode()
    assert '<td class="number cqrs-warn" id="cqrs-outbox-unsent">5</td>' in page
    assert 'id="cqrs-outbox-set-aside">2</td>' in page
    assert '<span id="cqrs-outbox-oldest-age">' in page
    assert 'id="cqrs-dead-letter-count" class="number cqrs-warn">1</td>' in page
    found = response.context["status"]
    assert found.outbox.unsent == 5
    assert {r.cqrs_id: r.last_revision for r in found.replicas}["product"] == 6
    assert found.dead_letters.count == 1


def test_the_changelist_links_to_the_page(client: Any) -> None:
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    changelist = client.get("/admin/dj_cqrs/outboxevent/").content.decode()
    assert f'<a href="{URL}" id="cqrs-status-link"' in changelist
    app_index = client.get("/admin/dj_cqrs/").content.decode()
    assert f'<a href="{URL}" id="cqrs-status-link"' in app_index


def test_anonymous_users_are_sent_to_the_login(client: Any) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


def test_users_who_are_not_staff_are_sent_to_the_login(client: Any) -> None:
    User.objects.create_user("someone", password="pw")
    client.login(username="someone", password="pw")
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_the_permission_get_403(client: Any) -> None:
    _staff("clerk", "view_product")
    client.login(username="clerk", password="pw")
    assert client.get(URL).status_code == 403


def test_a_down_broker_does_not_break_the_page(
    client: Any, stuck_broker: None, monkeypatch: Any
) -> None:
    monkeypatch.setattr(status, "DEAD_LETTER_TIMEOUT", 0.2)
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    response = client.get(URL)
    assert response.status_code == 200
    assert "unavailable: the broker did not answer within 0.2 s" in response.content.decode()
    assert "manage.py cqrs_dead_letters dump" in response.content.decode()


def test_a_custom_admin_site_gets_the_page() -> None:
    """`register_outbox_admin(site)` brings the page along to a site of one's own."""
    from django.contrib import admin

    from dj_cqrs.admin import register_outbox_admin

    site = admin.AdminSite(name="ops")
    register_outbox_admin(site)
    outbox = next(p for p in site.get_urls() if str(p.pattern) == "dj_cqrs/outboxevent/")
    assert "dj_cqrs_outboxevent_status" in {p.name for p in outbox.url_patterns}
