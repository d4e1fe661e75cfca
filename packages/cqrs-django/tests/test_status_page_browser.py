"""The admin status page in a real headless Chromium: the numbers shown are the database's.

Needs what `test_admin_browser.py` needs (Debian `chromium` and `chromium-driver`, selenium);
without them the test is skipped, or fails when the CI environment variable is set.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from cqrs_replica_models import AuthorRef, ProductRef
from django.contrib.auth.models import User
from django.utils import timezone
from replica_support import memory_cqrs_fixture  # noqa: F401  (fixture `memory_cqrs`)
from test_admin_browser import browser, eventually  # noqa: F401  (fixture `browser`)

from cqrs_core.messages import DeadLetter
from cqrs_core.transports.memory import MemoryTransport
from dj_cqrs.outbox.models import OutboxEvent
from dj_cqrs.replica.tombstone import Tombstone

pytestmark = pytest.mark.django_db(transaction=True)

SLACK = 60
"""Seconds the page may take to load after the rows were written (ages grow meanwhile)."""


def _seconds(text: str) -> float:
    """`4 min 10 s` / `12.3 s` (the page's durations) in seconds."""
    found = re.fullmatch(r"(?:(\d+) min )?([\d.]+) s", text.strip())
    assert found, text
    return int(found.group(1) or 0) * 60 + float(found.group(2))


def test_status_page_shows_the_database_state(
    browser: Any,  # noqa: F811  (the fixture imported above)
    live_server: Any,
    memory_cqrs: MemoryTransport,
    settings: Any,
) -> None:
    from selenium.webdriver.common.by import By

    master = dict(settings.CQRS["master"])
    master["outbox"] = {"keep_days": 7, "fast_path": False}
    settings.CQRS = {**settings.CQRS, "master": master}
    now = timezone.now()

    def ago(seconds: float) -> datetime.datetime:
        return now - datetime.timedelta(seconds=seconds)

    def row(cqrs_id: str, created: float, **extra: Any) -> None:
        OutboxEvent.objects.create(
            cqrs_id=cqrs_id,
            instance_pk="1",
            signal_type="SAVE",
            body="{}",
            created_at=ago(created),
            **extra,
        )

    # master: 4 unsent rows, 1 of them set aside, the oldest 400 s old; sent: 2 within the
    # last minute, 3 within 5 minutes, 1 older
    row("product", 400)
    row("product", 100)
    row("author", 20)
    row("author", 30, set_aside_at=ago(25), last_error="refused")
    for sent in (1, 10, 200, 3000):
        row("product", sent + 1, sent_at=ago(sent))
    # replica: product 7 at revision 3 is the newest product row; author 8 was deleted last
    ProductRef.objects.create(id=5, title="a", cqrs_revision=9, cqrs_updated=ago(900))
    ProductRef.objects.create(id=7, title="b", cqrs_revision=3, cqrs_updated=ago(90))
    AuthorRef.objects.create(id=2, name="c", cqrs_revision=1, cqrs_updated=ago(600))
    Tombstone.objects.create(
        cqrs_id="author", instance_pk="8", cqrs_revision=4, cqrs_updated=ago(45)
    )
    for n in range(3):
        memory_cqrs.broker.dead_letter(
            memory_cqrs._dead_queue, DeadLetter(body=b"{}", reason=str(n))
        )
    User.objects.create_superuser("admin", "admin@example.com", "s3cret-pw")

    browser.get(f"{live_server.url}/admin/login/?next=/admin/dj_cqrs/outboxevent/")
    browser.find_element(By.ID, "id_username").send_keys("admin")
    browser.find_element(By.ID, "id_password").send_keys("s3cret-pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    link = eventually(lambda: browser.find_elements(By.ID, "cqrs-status-link"), "the link")
    link[0].click()
    eventually(lambda: browser.find_elements(By.ID, "cqrs-outbox-unsent"), "the status page")

    def text(element_id: str) -> str:
        return str(browser.find_element(By.ID, element_id).text).strip()

    assert "CQRS replication status" in browser.title
    assert text("cqrs-outbox-unsent") == "4"
    assert text("cqrs-outbox-set-aside") == "1"
    assert 400 <= _seconds(text("cqrs-outbox-oldest-age")) < 400 + SLACK
    assert text("cqrs-outbox-sent-60").startswith("2 (")
    assert text("cqrs-outbox-sent-300").startswith("3 (")
    by_id = browser.find_element(By.ID, "cqrs-outbox-by-id")
    cells = [
        [c.text for c in r.find_elements(By.TAG_NAME, "td")]
        for r in by_id.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert cells == [["author", "2", "1"], ["product", "2", "0"]]

    product = browser.find_element(By.ID, "cqrs-replica-product")
    assert product.find_element(By.CLASS_NAME, "last").text == "SAVE pk 7"
    assert product.find_element(By.CLASS_NAME, "revision").text == "3"
    assert 90 <= _seconds(product.find_element(By.CLASS_NAME, "age").text) < 90 + SLACK
    author = browser.find_element(By.ID, "cqrs-replica-author")
    assert author.find_element(By.CLASS_NAME, "last").text == "DELETE pk 8"
    assert author.find_element(By.CLASS_NAME, "revision").text == "4"
    voucher = browser.find_element(By.ID, "cqrs-replica-voucher")
    assert voucher.find_element(By.CLASS_NAME, "empty").text == "nothing applied yet"
    assert text("cqrs-dead-letter-count") == "3"
