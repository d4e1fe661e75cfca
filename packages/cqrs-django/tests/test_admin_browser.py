"""The admin "sync" action driven in a real headless Chromium: the replica receives the rows.

Needs the Debian packages `chromium` and `chromium-driver` (or CQRS_TEST_CHROMIUM /
CQRS_TEST_CHROMEDRIVER pointing at the binaries) and the `selenium` package. Without them the
test is skipped, or fails when the CI environment variable is set.
"""

from __future__ import annotations

import datetime
import decimal
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cqrs_replica_models import ProductRef
from cqrs_testproject.master_app.admin import ProductAdmin
from cqrs_testproject.master_app.models import Product
from django.contrib.auth.models import User
from django.db import connections
from django.db.models import QuerySet
from replica_support import memory_cqrs_fixture  # noqa: F401  (fixture `memory_cqrs`)

from cqrs_core.testing._consuming import Recorder, consume_until
from cqrs_core.testing.plugin import service_unavailable
from cqrs_core.transports.memory import MemoryTransport
from dj_cqrs.consumer import consume

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 60.0
"""Upper bound for the browser or the replica (a hang guard, never a speed assertion)."""
CHROME_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
)


def _binary(env: str, *names: str) -> str | None:
    configured = os.environ.get(env)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium driven by selenium through the system chromedriver."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        service_unavailable("selenium (pip install selenium)", exc)
    chromium = _binary("CQRS_TEST_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    driver_path = _binary("CQRS_TEST_CHROMEDRIVER", "chromedriver")
    if chromium is None or driver_path is None:
        service_unavailable(
            "Chromium and chromedriver (apt-get install chromium chromium-driver)",
            f"chromium={chromium}, chromedriver={driver_path}",
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in CHROME_ARGS:
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except WebDriverException as exc:
        service_unavailable(f"headless Chromium ({chromium} via {driver_path})", exc.msg)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def eventually(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _fields(product: Product) -> tuple[Any, ...]:
    return (
        product.pk,
        product.name,
        product.quantity,
        product.price,
        product.release_date,
        product.published_at,
        product.is_active,
        product.note,
        product.external_uuid,
        product.cqrs_revision,
    )


def _replica_fields(ref: ProductRef) -> tuple[Any, ...]:
    return (
        ref.pk,
        ref.title,
        ref.stock,
        ref.price,
        ref.release_date,
        ref.published_at,
        ref.is_active,
        ref.note,
        ref.external_uuid,
        ref.cqrs_revision,
    )


def test_admin_sync_action_in_a_real_browser(
    browser: Any,
    live_server: Any,
    memory_cqrs: MemoryTransport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    published = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)
    products = [
        Product.objects.create(
            name=f"product {n}",
            quantity=n * 10,
            price=decimal.Decimal(f"{n}.25"),
            release_date=datetime.date(2026, 1, n),
            published_at=published,
            is_active=n != 3,
            note=None if n % 2 else f"note {n}",
        )
        for n in range(1, 5)
    ]
    # The creations were published too: take them off the queue without applying them, so
    # that the replica can only get rows from the admin action.
    drained = Recorder()
    consume_until(
        memory_cqrs, drained, lambda: drained.count() >= len(products), cqrs_ids=["product"]
    )
    assert ProductRef.objects.count() == 0

    # _cqrs_sync_queryset narrows what the action sends: here, active products only.
    seen_querysets: list[list[int]] = []

    def active_only(self: ProductAdmin, queryset: QuerySet[Product]) -> QuerySet[Product]:
        seen_querysets.append(sorted(queryset.values_list("pk", flat=True)))
        return queryset.filter(is_active=True)

    monkeypatch.setattr(ProductAdmin, "_cqrs_sync_queryset", active_only, raising=False)
    User.objects.create_superuser("admin", "admin@example.com", "s3cret-pw")

    browser.get(f"{live_server.url}/admin/login/?next=/admin/master_app/product/")
    browser.find_element(By.ID, "id_username").send_keys("admin")
    browser.find_element(By.ID, "id_password").send_keys("s3cret-pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    eventually(lambda: browser.find_elements(By.NAME, "_selected_action"), "the changelist")

    selected = [products[0].pk, products[2].pk, products[3].pk]  # #3 is inactive, #2 not picked
    for box in browser.find_elements(By.NAME, "_selected_action"):
        if int(box.get_attribute("value")) in selected:
            box.click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("sync_items")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    message = eventually(
        lambda: browser.find_elements(By.CSS_SELECTOR, ".messagelist .info"), "a message"
    )
    assert "2 successfully synced. 0 failed: []" in message[0].text
    assert seen_querysets == [sorted(selected)]

    # The replica consumer (the real apply path) receives exactly the synced rows.
    expected = {p.pk: _fields(p) for p in Product.objects.filter(pk__in=[selected[0], selected[2]])}

    def run() -> None:
        try:
            consume(["product"], transport=memory_cqrs)
        finally:
            connections.close_all()  # this thread's connections, before the test db goes

    consumer = threading.Thread(target=run, name="replica-consumer", daemon=True)
    consumer.start()
    try:
        eventually(lambda: ProductRef.objects.count() >= len(expected), "the replica rows")
    finally:
        memory_cqrs.stop()
        consumer.join(WAIT)
    assert not consumer.is_alive()
    assert {r.pk: _replica_fields(r) for r in ProductRef.objects.all()} == expected
